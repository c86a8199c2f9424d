"""``blocksim sweep-status SWEEP.toml``: done, running, failed and missing counts and the failure messages.

Also rewrites the sweep's manifest (manifest.json, manifest.h5) from the task files. Exit code 0.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    """Arguments of ``blocksim sweep-status``."""
    parser.add_argument("sweep", metavar="SWEEP.toml", help="sweep file")
    parser.add_argument("--list", action="store_true", help="print one line per task")


def command(args) -> int:
    """Run ``blocksim sweep-status``; returns the exit code."""
    from .cli import report
    from .manifest import collect_states, write_manifest
    from .spec import load_spec

    spec = load_spec(Path(args.sweep), validate_configs=False)
    states = collect_states(spec)
    report(spec, states)
    for st in states:
        if st.state == "running":
            info = st.info
            print(f"  task {st.index} running on {info.get('host', '?')} (pid {info.get('pid', '?')}, "
                  f"NUMBA_NUM_THREADS={info.get('numba_threads', '?')}, since {info.get('started', '?')})")
    if args.list:
        for task, st in zip(spec.tasks, states):
            print(f"  {task.index:5d} {st.state:8s} {task.filename}")
    if spec.output_dir.is_dir():
        write_manifest(spec, states)
    return 0
