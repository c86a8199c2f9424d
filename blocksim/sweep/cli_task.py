"""``blocksim run-task SWEEP.toml --index I``: run one task of a sweep (what every executor runs).

Exit codes: 0 when the task finished now or was already complete (or another process is running
it), 1 when it failed (the message is in ``.tasks/NAME.json`` and on stderr), 143 on SIGTERM.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError


def add_arguments(parser) -> None:
    """Arguments of ``blocksim run-task``."""
    parser.add_argument("sweep", metavar="SWEEP.toml", help="sweep file")
    parser.add_argument("--index", type=int, default=None,
                        help="task index (default: $SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--numba-threads", type=int, default=None,
                        help="Numba threads for this task (default: sweep.numba_threads, capped by the "
                             "CPUs available and by $NUMBA_NUM_THREADS)")


def threads_for_task(spec, requested: int | None) -> int:
    """Threads for a task started on its own: the request or the spec's, capped by CPUs and the env."""
    from .tasks import available_cores

    n = requested or spec.numba_threads
    n = min(n, available_cores())
    env = os.environ.get("NUMBA_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n)


def command(args) -> int:
    """Run ``blocksim run-task``; returns the exit code."""
    from .spec import load_spec
    from .tasks import TaskTerminated, run_task

    index = args.index
    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID", "")
        if not env.isdigit():
            raise InputError("--index: missing (and $SLURM_ARRAY_TASK_ID is not set)")
        index = int(env)
    if args.numba_threads is not None and args.numba_threads < 1:
        raise InputError(f"--numba-threads: {args.numba_threads} must be >= 1")
    spec = load_spec(Path(args.sweep), validate_configs=False)
    task = spec.task(index)
    threads = threads_for_task(spec, args.numba_threads)
    print(f"blocksim run-task: task {index} ({task.task_id}), NUMBA_NUM_THREADS={threads}", flush=True)
    try:
        res = run_task(spec, index, numba_threads=threads)
    except TaskTerminated:
        print(f"blocksim run-task: task {index} terminated by SIGTERM; its file was closed", file=sys.stderr)
        return 143
    if res.state == "failed":
        print(f"blocksim run-task: task {index} failed: {res.message}", file=sys.stderr)
        return 1
    what = {"done": f"done in {res.seconds:.2f} s", "skipped": "already complete",
            "running": "is being run by another process"}[res.state]
    print(f"blocksim run-task: task {index} {what}: {res.path}", flush=True)
    return 0
