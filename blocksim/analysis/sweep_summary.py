"""The MB flow of a whole sweep from its merged summary file (``blocksim merge``, docs/sweeps.md).

A summary file (format ``"blocksim-sweep-summary"``) holds, per merged task, a copy of the task's
``/summary`` group (per-step MB_num and its pool error) and the task's swept values. This reduction
writes

* ``sweep_mb_tasks.csv``: one row per (task, step): task_id, each swept key, replicate, step,
  scale_L_out (super-block size in L_1), mb, err (the task's jackknife error);
* ``sweep_mb.csv``: one row per (parameter point, step), the replicates of a point (tasks with equal
  swept values) combined as in :func:`.mb_ratio.combine_replicates`: mean, err_pool, err_seed;
* ``sweep_mb.png``: MB_num against the step, one line per parameter point.

Only the steps every replicate of a point has are combined. The copied datasets keep their
``checksum`` attributes (blocksim.io), which are verified here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import Report
from .loading import format_table, new_figure, save_figure, write_table
from .mb_ratio import combine_replicates

__all__ = ["SWEEP_FORMAT", "SweepRun", "load_sweep_summary", "run"]

SWEEP_FORMAT = "blocksim-sweep-summary"


@dataclass
class SweepRun:
    """One merged task: identity, swept values ``params`` (dotted key → value) and per-step arrays."""

    sweep: str
    task_id: str
    index: int
    replicate: int
    params: dict
    step: np.ndarray
    scale_L_out: np.ndarray
    mb: np.ndarray
    err: np.ndarray


def _text(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _values(ds, path):
    """A dataset's values, checked against its ``checksum`` attribute when it has one."""
    from ..io import checksum

    raw = ds[()]
    expected = _text(ds.attrs.get("checksum"))
    if expected is not None and checksum(raw) != expected:
        raise InputError(f"{path}: dataset {ds.name!r} does not match its checksum; the file is damaged")
    return raw


def load_sweep_summary(path) -> list[SweepRun]:
    """The merged tasks of a summary file, in task order (InputError for a damaged or foreign file)."""
    import h5py

    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as f:
            if _text(f.attrs.get("format", "")) != SWEEP_FORMAT:
                raise InputError(f"{path}: not a {SWEEP_FORMAT} file")
            sweep = str(_text(f.attrs.get("sweep", "")))
            keys = list(f["tasks/params"].keys()) if "tasks/params" in f else []
            runs = []
            for task_id, g in (f["runs"].items() if "runs" in f else []):
                s = g.get("summary")
                if s is None or "mb_ratio" not in s or "step" not in s:
                    raise InputError(f"{path}: /runs/{task_id} has no summary/mb_ratio")
                mb = np.asarray(_values(s["mb_ratio"], path), dtype=float)
                scale = _values(s["scale_L_out"], path) if "scale_L_out" in s else np.full(mb.shape, np.nan)
                err = _values(s["mb_ratio_err"], path) if "mb_ratio_err" in s else np.full(mb.shape, np.nan)
                runs.append(SweepRun(
                    sweep=sweep, task_id=str(task_id), index=int(g.attrs.get("index", -1)),
                    replicate=int(g.attrs.get("replicate", 0)),
                    params={k: _text(g.attrs[k]) for k in keys if k in g.attrs},
                    step=np.asarray(_values(s["step"], path), dtype=int), scale_L_out=np.asarray(scale, dtype=float),
                    mb=mb, err=np.asarray(err, dtype=float),
                ))
    except OSError as exc:
        raise InputError(f"{path}: the sweep summary cannot be read ({' '.join(str(exc).split())})") from None
    if not runs:
        raise InputError(f"{path}: the sweep summary holds no merged task (run the sweep, then merge again)")
    return sorted(runs, key=lambda r: r.index)


def task_rows(runs) -> list[dict]:
    """One row per (task, step)."""
    rows = []
    for r in runs:
        for i in range(len(r.mb)):
            rows.append({"sweep": r.sweep, "task_id": r.task_id, **r.params, "replicate": r.replicate,
                         "step": int(r.step[i]), "scale_L_out": float(r.scale_L_out[i]),
                         "mb": float(r.mb[i]), "err": float(r.err[i])})
    return rows


def point_rows(runs) -> list[dict]:
    """One row per (parameter point, step): replicates combined (mean, err_pool, err_seed)."""
    points: dict = {}
    for r in runs:
        key = (r.sweep, tuple(sorted((k, repr(v)) for k, v in r.params.items())))
        points.setdefault(key, []).append(r)
    rows = []
    for (sweep, _), group in points.items():
        k = min(len(r.mb) for r in group)
        mean, err_pool, err_seed = combine_replicates([r.mb[:k] for r in group], [r.err[:k] for r in group])
        for i in range(k):
            rows.append({"sweep": sweep, **group[0].params, "replicates": len(group), "step": int(group[0].step[i]),
                         "scale_L_out": float(group[0].scale_L_out[i]), "mb": float(mean[i]),
                         "err_pool": float(err_pool[i]), "err_seed": float(err_seed[i])})
    return rows


def run(files, outdir="analysis-out", **_options) -> Report:
    """Write ``sweep_mb_tasks.csv``, ``sweep_mb.csv`` and ``sweep_mb.png`` for summary files ``files``."""
    runs = [r for path in files for r in load_sweep_summary(path)]
    tasks = task_rows(runs)
    points = point_rows(runs)
    write_table(tasks, os.path.join(outdir, "sweep_mb_tasks.csv"))
    csv_path = write_table(points, os.path.join(outdir, "sweep_mb.csv"))
    fig, axes = new_figure()
    ax = axes[0, 0]
    labels = sorted({k for r in runs for k in r.params})
    seen = []
    for row in points:
        point = tuple(row.get(k) for k in ("sweep", *labels))
        if point in seen:
            continue
        seen.append(point)
        g = [p for p in points if tuple(p.get(k) for k in ("sweep", *labels)) == point]
        err = [p["err_seed"] if np.isfinite(p["err_seed"]) else p["err_pool"] for p in g]
        name = ", ".join(f"{k.split('.')[-1]}={row.get(k)}" for k in labels) or row["sweep"]
        ax.errorbar([p["step"] for p in g], [p["mb"] for p in g], yerr=err, marker="o", capsize=3,
                    label=f"{name} (n={row['replicates']})")
    ax.set_xlabel("coarse-graining step k")
    ax.set_ylabel("MB_num = sqrt(Im χ_l / Im χ_t)")
    ax.set_title("MB flow per parameter point of the sweep")
    ax.legend(fontsize=7)
    png_path = save_figure(fig, os.path.join(outdir, "sweep_mb.png"))
    text = format_table(points, "Sweep: MB_num per parameter point and step (replicates combined)")
    return Report("sweep_mb", points, csv_path, png_path, text, {"tasks": tasks})
