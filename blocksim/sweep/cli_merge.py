"""``blocksim merge SWEEP.toml -o SUMMARY.h5 [--force]``: one summary file for a whole sweep.

An existing SUMMARY.h5 is replaced only with ``--force``; a path that is one of the sweep's own files
(a task trajectory, its ``.part``, the manifest) is always refused.

Layout (also in docs/sweeps.md)::

    /                         attrs: format = "blocksim-sweep-summary", format_version, sweep,
                                     sweep_toml, entropy, n_tasks, n_merged, blocksim_version, created
    /tasks/                   one entry per task, in task order (the manifest table)
        index, task_id, file, replicate, state, message, spawn_key [n, 1]
        params/<dotted key>   value of each swept key per task
        merged [n] bool       True where the task's trajectory was merged
    /runs/<task_id>/          one group per merged task; attrs: index, replicate, file, status,
                              config_toml, seed_entropy, and every swept key's value
        summary/...           a copy of the trajectory's /summary group (datasets keep units and
                              description)
    /stacked/<name> [n, S]    every 1-D /summary dataset stacked over tasks, float64, NaN-padded to
                              the longest run (S steps); rows of unmerged tasks are NaN
    /stacked/length [n]       number of valid entries per row (0 for unmerged tasks)

Only tasks whose files are complete are merged; the others keep their state and message in /tasks.
Exit code 0, or 1 with ``--strict`` when some task is not done.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

FORMAT_VERSION = 1


def add_arguments(parser) -> None:
    """Arguments of ``blocksim merge``."""
    parser.add_argument("sweep", metavar="SWEEP.toml", help="sweep file")
    parser.add_argument("-o", "--output", required=True, metavar="SUMMARY.h5", help="summary file to write")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any task is not done")
    parser.add_argument("--force", action="store_true", help="replace an existing SUMMARY.h5")


def _attr_value(v):
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def check_merge_output(spec, output: Path, force: bool) -> None:
    """Refuse a summary path that would destroy a result: one of the sweep's own files (task
    trajectories, their ``.part`` files, the manifest) always, any other existing file unless ``force``."""
    if output.suffix not in (".h5", ".hdf5"):
        raise InputError(f"-o: {str(output)!r} must end in .h5")
    if output.is_dir():
        raise InputError(f"-o: {str(output)!r} is a directory; give a file name ending in .h5")
    target = output.resolve()
    own = {spec.output_dir / "manifest.h5", spec.output_dir / "manifest.json"}
    for task in spec.tasks:
        own.update({spec.output_path(task), spec.part_path(task)})
    if target in {p.resolve() for p in own}:
        raise InputError(f"-o: {str(output)!r} is one of the sweep's own files (task results or manifest); "
                         "choose another name, e.g. summary.h5")
    if output.exists() and not force:
        raise InputError(f"-o: {str(output)!r} exists; use --force to replace it")


def merge_sweep(spec, output, *, force: bool = False) -> dict:
    """Write the summary file of ``spec`` to ``output`` (atomically); return the state counts.

    An existing ``output`` is replaced only with ``force``; the sweep's own files never are.
    """
    import h5py

    from .._version import __version__
    from .manifest import collect_states, counts, manifest_records, write_task_table

    output = Path(output)
    check_merge_output(spec, output, force)
    states = collect_states(spec)
    records = manifest_records(spec, states)
    merged = np.array([st.state == "done" for st in states], dtype=bool)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    stacked: dict[str, dict[int, np.ndarray]] = {}
    stacked_attrs: dict[str, dict] = {}
    try:
        with h5py.File(tmp, "w") as out:
            out.attrs.update({
                "format": "blocksim-sweep-summary", "format_version": FORMAT_VERSION, "sweep": spec.name,
                "sweep_toml": spec.text, "entropy": spec.entropy, "n_tasks": len(spec.tasks),
                "n_merged": int(merged.sum()), "blocksim_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })
            table = out.create_group("tasks")
            write_task_table(table, spec, records)
            ds = table.create_dataset("merged", data=merged)
            ds.attrs.update(description="True where the task's trajectory was merged into /runs", units="1")
            runs = out.create_group("runs")
            for task, st in zip(spec.tasks, states):
                if st.state != "done":
                    continue
                try:
                    src_file = h5py.File(st.path, "r")
                except OSError as exc:
                    raise InputError(f"merge: task file {str(st.path)!r} cannot be read ({exc}); delete it "
                                     "and rerun the sweep to redo that task") from None
                with src_file as src:
                    if "summary" not in src:
                        raise InputError(f"merge: {st.path} has no /summary group")
                    g = runs.create_group(task.task_id)
                    g.attrs.update({"index": task.index, "replicate": task.replicate, "file": task.filename})
                    for key in ("status", "config_toml", "seed_entropy", "spawn_key"):
                        if key in src.attrs:
                            g.attrs[key] = src.attrs[key]
                    for key, value in task.params:
                        g.attrs[key] = _attr_value(value)
                    src.copy(src["summary"], g, "summary")
                    for name, dset in src["summary"].items():
                        if isinstance(dset, h5py.Dataset) and dset.ndim == 1 and dset.dtype.kind in "biuf":
                            stacked.setdefault(name, {})[task.index] = dset[()].astype(np.float64)
                            stacked_attrs.setdefault(name, dict(dset.attrs))
            sg = out.create_group("stacked")
            sg.attrs["description"] = "1-D /summary datasets stacked over tasks (rows = task index), NaN-padded"
            width = max((len(a) for d in stacked.values() for a in d.values()), default=0)
            length = np.zeros(len(spec.tasks), dtype=np.int64)
            for name, rows in stacked.items():
                arr = np.full((len(spec.tasks), width), np.nan)
                for i, a in rows.items():
                    arr[i, : len(a)] = a
                    length[i] = max(length[i], len(a))
                ds = sg.create_dataset(name, data=arr)
                ds.attrs.update(stacked_attrs[name])
                ds.attrs["stacked"] = "rows: task index; columns: entries of /summary/" + name
            ds = sg.create_dataset("length", data=length)
            ds.attrs.update(description="valid entries per row of the stacked arrays", units="1")
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return counts(states)


def command(args) -> int:
    """Run ``blocksim merge``; returns the exit code."""
    from .cli import report
    from .spec import load_spec

    spec = load_spec(Path(args.sweep), validate_configs=False)
    n = merge_sweep(spec, args.output, force=args.force)
    print(f"merged {n['done']} of {len(spec.tasks)} task(s) into {args.output}")
    if n["done"] != len(spec.tasks):
        from .manifest import collect_states

        report(spec, collect_states(spec), stream=sys.stderr)
        return 1 if args.strict else 0
    return 0
