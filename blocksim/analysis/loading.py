"""Reading trajectories for the analysis, grouping replicates, and writing tables and figures.

Trajectories are read with :func:`blocksim.io.open_trajectory` (BRIEF §4), the one reader: a
:class:`Trajectory` holds the file's complete steps as :class:`blocksim.io.Step` objects (loaded
into memory, detached from the file), its root attributes, config and summary.

Tables are lists of dict rows written as CSV and printed as aligned text; figures are written with
matplotlib's Agg backend.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = [
    "Trajectory",
    "load_trajectory",
    "file_format",
    "load_trajectories",
    "group_replicates",
    "common_steps",
    "n0_of",
    "cl_over_ct_of",
    "config_value",
    "write_table",
    "format_table",
    "new_figure",
    "save_figure",
]

FORMAT = "blocksim-trajectory"
#: Root ``format`` of a sweep's manifest.h5 (:mod:`blocksim.sweep.manifest`): not a trajectory; ``analyze`` leaves it out.
MANIFEST_FORMAT = "blocksim-sweep-manifest"

@dataclass
class Trajectory:
    """A trajectory file's content for the analysis: ``steps`` is a list of :class:`blocksim.io.Step`."""

    path: str
    attrs: dict
    config: dict
    status: str
    steps: list
    summary: dict

    @property
    def name(self) -> str:
        """The file name without its suffix (used to label tables and figures)."""
        return Path(self.path).stem


def _from_io(path):
    from ..io import open_trajectory

    with open_trajectory(path) as traj:
        steps = list(traj.steps)
        summary = {k: np.asarray(v) for k, v in (traj.summary or {}).items()}
        return Trajectory(str(path), dict(traj.attrs), dict(traj.config), str(traj.status), steps, summary)


def _attr_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def file_format(path) -> str:
    """The root ``format`` attribute of an HDF5 file ("" if absent). InputError for a missing, non-HDF5
    or unreadable (truncated, damaged) file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such trajectory file")
    import h5py  # noqa: PLC0415

    try:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path}: not an HDF5 file (expected a {FORMAT} file)")
        with h5py.File(path, "r") as f:
            return _attr_text(f.attrs.get("format", ""))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read as HDF5 ({' '.join(str(exc).split())}); the file is "
                         "damaged (truncated or overwritten)") from None


def load_trajectory(path) -> Trajectory:
    """Read one trajectory file (complete steps only). InputError for a missing, foreign or damaged file."""
    path = os.fspath(path)
    fmt = file_format(path)
    if fmt == "blocksim-sweep-summary":
        raise InputError(f"{path}: a merged sweep summary, not a trajectory; `blocksim analyze` reads it "
                         "(blocksim.analysis.sweep_summary)")
    if fmt != FORMAT:
        raise InputError(f"{path}: format = {fmt!r}: not a {FORMAT} file")
    traj = _from_io(path)
    if not traj.steps:
        raise InputError(f"{path}: no complete step (status = {traj.status!r})")
    return traj


def load_trajectories(paths) -> list:
    """Read several trajectory files (see :func:`load_trajectory`); at least one is required."""
    paths = list(paths)
    if not paths:
        raise InputError("FILES: give at least one trajectory file")
    return [t if isinstance(t, Trajectory) else load_trajectory(t) for t in paths]


def config_value(traj: Trajectory, dotted: str, default=None):
    """``config['a']['b']`` for ``dotted = 'a.b'``, or ``default`` if absent."""
    node = traj.config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def cl_over_ct_of(traj: Trajectory) -> float:
    """c_l/c_t of a trajectory (config ``model.cl_over_ct``; the config default 1.6 if absent)."""
    return float(config_value(traj, "model.cl_over_ct", 1.6))


def n0_of(traj: Trajectory) -> int:
    """N0: from the ratio of successive ``scale_L`` (L_{k+1} = N0 L_k), else config ``lattice.n0``."""
    if len(traj.steps) >= 2 and traj.steps[0].scale_L > 0:
        ratio = traj.steps[1].scale_L / traj.steps[0].scale_L
        if ratio >= 1.5:
            return int(round(ratio))
    return int(config_value(traj, "lattice.n0", 2))


def group_key(traj: Trajectory) -> tuple:
    """Replicates (seeds) of one physical setup share (c_l/c_t, g, N0, block kind, n, n_keep)."""
    return (
        round(cl_over_ct_of(traj), 6),
        round(float(config_value(traj, "model.coupling", traj.steps[0].coupling_g)), 12),
        n0_of(traj),
        str(config_value(traj, "model.block", "")),
        int(config_value(traj, "model.n", 0)),
        int(config_value(traj, "rg.n_keep", 0)),
    )


def group_replicates(trajs) -> list:
    """Split trajectories into groups of replicates (same :func:`group_key`), in first-seen order."""
    groups: dict = {}
    for t in trajs:
        groups.setdefault(group_key(t), []).append(t)
    return list(groups.values())


def common_steps(group) -> int:
    """Number of complete steps present in every trajectory of the group."""
    return min(len(t.steps) for t in group)


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def format_table(rows, title: str = "") -> str:
    """Aligned plain-text rendering of a list of dict rows (all rows share the first row's keys)."""
    if not rows:
        return f"{title}\n(no rows)" if title else "(no rows)"
    keys = list(rows[0].keys())
    cells = [[_fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = [title] if title else []
    lines.append("  ".join(k.rjust(w) for k, w in zip(keys, widths)))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)
    return "\n".join(lines)


def write_table(rows, path) -> str:
    """Write dict rows as CSV (header from the first row's keys); returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    keys = list(rows[0].keys()) if rows else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(keys)
        for r in rows:
            writer.writerow([_fmt(r.get(k, "")) for k in keys])
    return path


def new_figure(ncols: int = 1, nrows: int = 1, size=(5.5, 4.0)):
    """A matplotlib Figure (Agg canvas, no pyplot state) with a grid of axes."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path) -> str:
    """Write a figure as PNG with the Agg backend; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415

    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)
    return path
