"""Im χ_l,t(ω) at chosen steps and temperatures (the stored ``im_chi_l``, ``im_chi_t`` arrays).

Im χ < 0 for ω > 0 (Eq. 2.9 of [ZL]); the figure shows −Im χ on log–log axes. ω and T in units of E*,
Im χ per volume in units of T*²/(E*·V) as stored. Default selection: the first and last step of the
first file, and the lowest, middle and highest stored temperature.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from . import Report, script_main
from .loading import format_table, load_trajectories, new_figure, save_figure, write_table

__all__ = ["select_steps", "select_temperatures", "spectra_rows", "run", "main"]


def select_steps(traj, steps=None):
    """Step records for the requested indices (default first and last). InputError for an unknown step."""
    by_index = {s.index: s for s in traj.steps}
    if steps is None:
        wanted = sorted({traj.steps[0].index, traj.steps[-1].index})
    else:
        wanted = [int(k) for k in steps]
    out = []
    for k in wanted:
        if k not in by_index:
            raise InputError(f"step = {k}: not a complete step of {traj.path} (have {sorted(by_index)})")
        out.append(by_index[k])
    return out


def select_temperatures(step, temperatures=None):
    """Indices into ``step.temperature``: nearest stored value to each request (default low/mid/high)."""
    t = np.asarray(step.temperature)
    if temperatures is None:
        return sorted({0, t.size // 2, t.size - 1})
    idx = []
    for value in temperatures:
        j = int(np.argmin(np.abs(t - float(value))))
        if not np.isclose(t[j], float(value), rtol=0.05, atol=0.0):
            raise InputError(f"temperature = {value}: not on the stored grid (have {t.tolist()})")
        idx.append(j)
    return idx


def spectra_rows(trajs, steps=None, temperatures=None):
    """One row per (file, step, T, ω) with Im χ_l and Im χ_t."""
    rows = []
    for traj in trajs:
        for st in select_steps(traj, steps):
            for j in select_temperatures(st, temperatures):
                for i, w in enumerate(st.omega):
                    rows.append(
                        {
                            "file": traj.name,
                            "step": st.index,
                            "temperature": float(st.temperature[j]),
                            "omega": float(w),
                            "im_chi_l": float(st.im_chi_l[j, i]),
                            "im_chi_t": float(st.im_chi_t[j, i]),
                        }
                    )
    return rows


def run(files, outdir="analysis-out", steps=None, temperatures=None, **_options) -> Report:
    """Write ``spectra.csv`` and ``spectra.png`` (one panel per step of the first file, l solid, t dashed)."""
    trajs = load_trajectories(files)
    rows = spectra_rows(trajs, steps, temperatures)
    csv_path = write_table(rows, os.path.join(outdir, "spectra.csv"))
    first = trajs[0]
    chosen = select_steps(first, steps)
    fig, axes = new_figure(ncols=len(chosen))
    for ax, st in zip(axes[0], chosen):
        for j in select_temperatures(st, temperatures):
            line, = ax.plot(st.omega, -st.im_chi_l[j], label=f"l, T={st.temperature[j]:.3g}")
            ax.plot(st.omega, -st.im_chi_t[j], ls="--", color=line.get_color(), label=f"t, T={st.temperature[j]:.3g}")
        if np.all(st.omega > 0):
            ax.set_xscale("log")
        if np.all(-st.im_chi_l > 0) and np.all(-st.im_chi_t > 0):
            ax.set_yscale("log")
        ax.set_xlabel("ω  [E*]")
        ax.set_ylabel("−Im χ  [T*²/(E*·V)]")
        ax.set_title(f"{first.name}: step {st.index}, L = {st.scale_L:.3g} L1")
        ax.legend(fontsize=7)
    png_path = save_figure(fig, os.path.join(outdir, "spectra.png"))
    n_show = min(len(rows), 30)
    text = format_table(rows[:n_show], f"Im χ_l,t(ω) (first {n_show} of {len(rows)} rows; full table in CSV)")
    return Report("spectra", rows, csv_path, png_path, text)


def _options(parser):
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="step indices (default first, last)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=None, help="temperatures [E*]")


def main(argv=None) -> int:
    """``python analysis/spectra.py FILES... [-o OUTDIR] [--steps K ...] [--temperatures T ...]``."""
    return script_main(run, "Im χ_l,t(ω) at chosen steps and temperatures", argv, _options)
