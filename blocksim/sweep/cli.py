"""``blocksim sweep SWEEP.toml [--executor local|dask|slurm]``: run every task of a sweep.

Complete tasks are skipped, failed and interrupted ones are run again, tasks another process is
running are left alone. ``local`` and ``dask`` block until their tasks finish; ``slurm`` submits a job
array and returns, or with ``--wait`` polls ``squeue`` until the array has left the queue. The
manifest (manifest.json, manifest.h5) is rewritten at the start, as tasks finish and at the end.
Exit code 0 when every task is done, 1 when any task failed or is missing after waiting.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from ..errors import InputError

EXECUTORS = ("local", "dask", "slurm")


def add_arguments(parser) -> None:
    """Arguments of ``blocksim sweep``."""
    parser.add_argument("sweep", metavar="SWEEP.toml", help="sweep file (docs/sweeps.md)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="where tasks run (default local)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local: worker processes; dask: LocalCluster worker processes or SLURMCluster jobs")
    parser.add_argument("--cores", type=int, default=None,
                        help="cores the local/dask executor may use (default: the CPUs available)")
    parser.add_argument("--scheduler", default=None, help="dask: address of a running scheduler")
    parser.add_argument("--dry-run", action="store_true",
                        help="slurm: only write the sbatch script; others: list the tasks that would run")
    parser.add_argument("--wait", action="store_true",
                        help="slurm: block until every task has finished (local and dask always wait)")
    parser.add_argument("--poll", type=float, default=5.0, help="slurm --wait: seconds between squeue polls")
    parser.add_argument("--timeout", type=float, default=None,
                        help="slurm --wait: give up after this many seconds; dask: wait at most this long "
                             "for the first worker")
    parser.add_argument("--hdf5-file-locking", choices=("auto", "true", "false", "best-effort"), default=None,
                        help="set HDF5_USE_FILE_LOCKING for the tasks (overrides sweep.hdf5_file_locking)")


class _ManifestUpdater:
    """Rewrites the manifest at most every ``interval`` seconds (and on ``flush``)."""

    def __init__(self, spec, interval: float = 2.0):
        self.spec, self.interval, self.last = spec, interval, 0.0

    def __call__(self, *_):
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self):
        from .manifest import write_manifest

        self.last = time.monotonic()
        return write_manifest(self.spec)


def _print_result(total: int):
    done = [0]

    def show(res):
        done[0] += 1
        if res.state == "failed":
            print(f"[{done[0]}/{total}] task {res.index} failed: {res.message}", flush=True)
        else:
            print(f"[{done[0]}/{total}] task {res.index} {res.state} ({res.seconds:.2f} s)", flush=True)

    return show


def report(spec, states, stream=None) -> dict:
    """Print the state counts and one line per failed task (to stdout by default); return the counts."""
    from .manifest import counts

    stream = sys.stdout if stream is None else stream
    n = counts(states)
    print(f"sweep {spec.name}: {len(states)} task(s): " + ", ".join(f"{v} {k}" for k, v in n.items()),
          file=stream, flush=True)
    for st in states:
        if st.state == "failed":
            print(f"  task {st.index} ({spec.tasks[st.index].task_id}) failed: {st.message}", file=stream)
    return n


def command(args) -> int:
    """Run ``blocksim sweep``; returns the exit code."""
    from .manifest import collect_states, write_manifest
    from .spec import load_spec

    spec = load_spec(Path(args.sweep))
    if args.hdf5_file_locking is not None:
        spec = dataclasses.replace(spec, hdf5_file_locking=args.hdf5_file_locking)
    for opt in ("workers", "cores"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise InputError(f"--{opt}: {value} must be >= 1")
    if args.poll <= 0:
        raise InputError(f"--poll: {args.poll} must be > 0 seconds")

    states = collect_states(spec)
    todo = [s.index for s in states if s.state in ("missing", "failed")]
    busy = sum(s.state == "running" for s in states)
    skipped = sum(s.state == "done" for s in states)
    print(f"sweep {spec.name}: {len(spec.tasks)} task(s) in {spec.output_dir}; {skipped} already done, "
          f"{busy} running elsewhere, {len(todo)} to run ({args.executor} executor); "
          f"HDF5_USE_FILE_LOCKING: {spec.hdf5_file_locking}", flush=True)
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(spec, states)

    if args.executor == "slurm":
        return _slurm(spec, todo, args)
    if args.dry_run:
        for i in todo:
            print(f"  would run task {i}: {spec.tasks[i].task_id}")
        return 0

    updater = _ManifestUpdater(spec)
    show = _print_result(len(todo))

    def on_result(res):
        show(res)
        updater()

    try:
        if args.executor == "local":
            from .executors import run_local

            run_local(spec, todo, workers=args.workers, cores=args.cores, on_result=on_result)
        else:
            from .executors import run_dask

            run_dask(spec, todo, scheduler=args.scheduler, n_workers=args.workers, cores=args.cores,
                     on_result=on_result, timeout=args.timeout)
    finally:
        updater.flush()
    n = report(spec, collect_states(spec))
    return 0 if n["done"] == len(spec.tasks) else 1


def _slurm(spec, todo, args) -> int:
    from .executors import submit_slurm, wait_slurm
    from .manifest import collect_states

    script, job = submit_slurm(spec, todo, dry_run=args.dry_run)
    if args.dry_run:
        if script is not None:
            print(f"dry run: not submitted; submit with: sbatch {script}")
        return 0
    if not args.wait:
        if job is not None:
            print(f"array job {job} submitted; follow it with: blocksim sweep-status {spec.path}")
        return 0
    updater = _ManifestUpdater(spec, interval=max(args.poll, 2.0))
    if job is not None:
        wait_slurm(spec, job, poll=args.poll, timeout=args.timeout, on_poll=updater)
    # tasks run by other processes (already running before) are waited for on the files
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while any(s.state == "running" for s in collect_states(spec)):
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(args.poll)
    updater.flush()
    n = report(spec, collect_states(spec))
    if n["missing"]:
        print(f"  missing tasks never started or died before writing their status; see {spec.log_dir}")
    return 0 if n["done"] == len(spec.tasks) else 1
