"""The sweep manifest: every task with its parameters, seed, state and file.

Two files in the sweep's output directory, rewritten together (each atomically: written to a temporary
name, then renamed) by ``blocksim sweep``, ``sweep-status`` and ``merge``; tasks themselves never write
them, so there is a single writer at a time and no lost updates:

* ``manifest.json``: ``{"format": "blocksim-sweep-manifest", "format_version": 1, "sweep": name,
  "sweep_file": path, "entropy": int, "swept_keys": [...], "counts": {state: n}, "updated": time,
  "tasks": [{"index", "task_id", "file", "replicate", "params": {key: value}, "seed_entropy",
  "spawn_key", "state", "message", "host", "numba_threads", "seconds"}, ...]}``
* ``manifest.h5``: the same table as HDF5 datasets under ``/tasks`` (one entry per task, in task
  order): ``index``, ``task_id``, ``file``, ``replicate``, ``state``, ``message``, ``spawn_key``, and
  ``params/<dotted key>`` per swept key; root attributes ``format`` = "blocksim-sweep-manifest",
  ``format_version``, ``sweep``, ``entropy``, ``sweep_toml``.

The per-task truth lives in the task files and ``.tasks/NAME.json`` (see :mod:`blocksim.sweep.tasks`);
the manifest is a snapshot of it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .spec import SweepSpec
from .tasks import STATES, TaskState, task_state

__all__ = ["collect_states", "manifest_records", "write_manifest", "read_manifest", "counts",
           "MANIFEST_JSON", "MANIFEST_H5", "param_array"]

MANIFEST_JSON = "manifest.json"
MANIFEST_H5 = "manifest.h5"
FORMAT_VERSION = 1


def collect_states(spec: SweepSpec) -> list[TaskState]:
    """:func:`blocksim.sweep.tasks.task_state` of every task, in task order."""
    return [task_state(spec, task) for task in spec.tasks]


def counts(states) -> dict[str, int]:
    """``{state: number of tasks}`` for every state in :data:`STATES` (zeros included)."""
    out = dict.fromkeys(STATES, 0)
    for s in states:
        out[s.state] += 1
    return out


def manifest_records(spec: SweepSpec, states=None) -> list[dict]:
    """One dict per task (the ``tasks`` list of manifest.json)."""
    states = collect_states(spec) if states is None else states
    records = []
    for task, st in zip(spec.tasks, states):
        records.append({
            "index": task.index,
            "task_id": task.task_id,
            "file": task.filename,
            "replicate": task.replicate,
            "params": dict(task.params),
            "seed_entropy": spec.entropy,
            "spawn_key": [task.index],
            "state": st.state,
            "message": st.message,
            "host": st.info.get("host", ""),
            "numba_threads": st.info.get("numba_threads", 0),
            "seconds": st.info.get("seconds", 0.0),
        })
    return records


def param_array(values) -> np.ndarray:
    """Values of one swept key as an HDF5-friendly array (float64, int64, bool or UTF-8 strings)."""
    values = list(values)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([str(v) for v in values], dtype=object)


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def write_task_table(group, spec: SweepSpec, records: list[dict]) -> None:
    """Write the per-task table (datasets of length n_tasks) into an open h5py group."""
    import h5py

    str_dt = h5py.string_dtype()

    def put(name, data, description, units="1"):
        dt = str_dt if data.dtype == object else None
        ds = group.create_dataset(name, data=data, dtype=dt)
        ds.attrs["description"] = description
        ds.attrs["units"] = units

    put("index", np.array([r["index"] for r in records], dtype=np.int64), "task index (enumeration order)")
    put("task_id", _strings(r["task_id"] for r in records), "task id = file stem")
    put("file", _strings(r["file"] for r in records), "trajectory file name, relative to the sweep output_dir")
    put("replicate", np.array([r["replicate"] for r in records], dtype=np.int64), "replicate number")
    put("state", _strings(r["state"] for r in records), "done | running | failed | missing")
    put("message", _strings(r["message"] for r in records), "one-line failure message ('' if none)")
    put("spawn_key", np.array([r["spawn_key"] for r in records], dtype=np.int64).reshape(len(records), 1),
        "seed spawn key: SeedSequence(entropy, spawn_key=(index,))")
    params = group.create_group("params")
    params.attrs["description"] = "swept config values per task, one dataset per dotted key"
    for key in spec.swept_keys:
        ds = params.create_dataset(key, data=param_array(r["params"][key] for r in records),
                                   dtype=str_dt if isinstance(records[0]["params"][key], str) else None)
        ds.attrs["description"] = f"value of config key {key} per task"
        ds.attrs["units"] = "see docs/config.md"


def write_manifest(spec: SweepSpec, states=None) -> dict[str, int]:
    """Rewrite manifest.json and manifest.h5 from the current task states; return the counts."""
    import h5py

    states = collect_states(spec) if states is None else states
    records = manifest_records(spec, states)
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    n = counts(states)
    doc = {
        "format": "blocksim-sweep-manifest",
        "format_version": FORMAT_VERSION,
        "sweep": spec.name,
        "sweep_file": str(spec.path) if spec.path else "",
        "output_dir": str(spec.output_dir),
        "entropy": spec.entropy,
        "swept_keys": list(spec.swept_keys),
        "counts": n,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tasks": records,
    }
    pid = os.getpid()
    target = spec.output_dir / MANIFEST_JSON
    tmp = target.with_name(f".{MANIFEST_JSON}.{pid}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, target)

    target = spec.output_dir / MANIFEST_H5
    tmp = target.with_name(f".{MANIFEST_H5}.{pid}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = "blocksim-sweep-manifest"
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["sweep"] = spec.name
        f.attrs["entropy"] = spec.entropy
        f.attrs["sweep_toml"] = spec.text
        write_task_table(f.create_group("tasks"), spec, records)
    os.replace(tmp, target)
    return n


def read_manifest(output_dir) -> dict:
    """The parsed manifest.json of a sweep output directory."""
    return json.loads((Path(output_dir) / MANIFEST_JSON).read_text())
