"""MB_num per coarse-graining step with standard errors over the pool and over seeds.

MB_num = sqrt(Im χ_l/Im χ_t) (BRIEF §1.7; powder average, DESIGN "Sign and normalisation
conventions"), read per step from the trajectory (``/summary/mb_ratio`` and ``mb_ratio_err``, the
pool standard error). For a group of replicates (files of one setup that differ only in the seed,
:func:`.loading.group_replicates`) with values MB_i ± σ_i, i = 1..n:

* mean MB = (1/n) Σ MB_i;
* pool error   σ_pool = sqrt(Σ σ_i²)/n  (the pool errors of the files, propagated to the mean);
* seed error   σ_seed = std(MB_i, ddof=1)/sqrt(n) (scatter between replicates; it contains the pool
  noise, so it is the error to quote when n ≥ 2; undefined for n = 1).

Both shrink like n^{−1/2}. The last step's MB is compared with c_l/c_t (config ``model.cl_over_ct``),
the self-consistent answer of Eq. (4.5) of [ZL].
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InputError
from . import Report, script_main
from .loading import (
    cl_over_ct_of,
    common_steps,
    format_table,
    group_replicates,
    load_trajectories,
    n0_of,
    new_figure,
    save_figure,
    write_table,
)

__all__ = ["combine_replicates", "step_mb", "mb_rows", "run", "main"]


def combine_replicates(values, errors=None):
    """Mean over replicates (axis 0) with pool and seed standard errors: ``(mean, err_pool, err_seed)``.

    ``values`` [n, ...]; ``errors`` [n, ...] per-replicate standard errors (or None). See module
    docstring for the formulas. err_seed is NaN for n = 1.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 0 or v.shape[0] < 1:
        raise InputError("values: need at least one replicate")
    n = v.shape[0]
    mean = v.mean(axis=0)
    if errors is None:
        err_pool = np.full_like(mean, np.nan)
    else:
        e = np.asarray(errors, dtype=float)
        err_pool = np.sqrt(np.sum(e * e, axis=0)) / n
    err_seed = v.std(axis=0, ddof=1) / math.sqrt(n) if n >= 2 else np.full_like(mean, np.nan)
    return mean, err_pool, err_seed


def step_mb(traj):
    """Per-step ``(mb [K], mb_err [K])`` of one trajectory (summary arrays, else the step scalars)."""
    k = len(traj.steps)
    s = traj.summary
    if "mb_ratio" in s and np.asarray(s["mb_ratio"]).shape[0] >= k:
        mb = np.asarray(s["mb_ratio"], dtype=float)[:k]
        err = np.asarray(s.get("mb_ratio_err", np.full(k, np.nan)), dtype=float)[:k]
        return mb, err
    mb = np.array([float(np.ravel(st.mb_ratio)[0]) for st in traj.steps])
    err = np.array([float(np.ravel(st.mb_ratio_err)[0]) for st in traj.steps])
    return mb, err


def mb_rows(trajs):
    """Table rows: one per (group, step) with MB, σ_pool, σ_seed, and the group's c_l/c_t."""
    rows = []
    for gi, group in enumerate(group_replicates(trajs)):
        k = common_steps(group)
        vals, errs = zip(*(step_mb(t) for t in group))
        vals = np.array([v[:k] for v in vals])
        errs = np.array([e[:k] for e in errs])
        mean, err_pool, err_seed = combine_replicates(vals, errs)
        cl = cl_over_ct_of(group[0])
        scale = [group[0].steps[i].scale_L for i in range(k)]
        for i in range(k):
            rows.append(
                {
                    "group": gi,
                    "cl_over_ct": cl,
                    "n0": n0_of(group[0]),
                    "replicates": len(group),
                    "step": group[0].steps[i].index,
                    "scale_L": scale[i],
                    "mb": float(mean[i]),
                    "err_pool": float(err_pool[i]),
                    "err_seed": float(err_seed[i]),
                }
            )
    return rows


def _quoted_error(row) -> float:
    return row["err_seed"] if not math.isnan(row["err_seed"]) else row["err_pool"]


def final_rows(rows):
    """Last step of each group: MB ± error against c_l/c_t, with the deviation in standard errors."""
    out = []
    for gi in sorted({r["group"] for r in rows}):
        last = [r for r in rows if r["group"] == gi][-1]
        err = _quoted_error(last)
        out.append(
            {
                "group": gi,
                "cl_over_ct": last["cl_over_ct"],
                "replicates": last["replicates"],
                "final_step": last["step"],
                "mb_final": last["mb"],
                "err": err,
                "mb_minus_clct": last["mb"] - last["cl_over_ct"],
                "deviation_sigma": (last["mb"] - last["cl_over_ct"]) / err if err > 0 else float("nan"),
            }
        )
    return out


def run(files, outdir="analysis-out", **_options) -> Report:
    """Write ``mb_ratio.csv``, ``mb_ratio_final.csv`` and ``mb_ratio.png`` under ``outdir``."""
    trajs = load_trajectories(files)
    rows = mb_rows(trajs)
    finals = final_rows(rows)
    csv_path = write_table(rows, os.path.join(outdir, "mb_ratio.csv"))
    write_table(finals, os.path.join(outdir, "mb_ratio_final.csv"))
    fig, axes = new_figure()
    ax = axes[0, 0]
    for f in finals:
        g = [r for r in rows if r["group"] == f["group"]]
        x = [r["step"] for r in g]
        y = [r["mb"] for r in g]
        e = [_quoted_error(r) for r in g]
        line = ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=f"c_l/c_t = {f['cl_over_ct']:.3g} (n={f['replicates']})")
        ax.axhline(f["cl_over_ct"], color=line[0].get_color(), ls="--", lw=1)
    ax.set_xlabel("coarse-graining step k  (L = N0^k L1)")
    ax.set_ylabel("MB_num = sqrt(Im χ_l / Im χ_t)")
    ax.set_title("MB ratio per step (dashed: c_l/c_t, Eq. 4.5)")
    ax.legend(fontsize=8)
    png_path = save_figure(fig, os.path.join(outdir, "mb_ratio.png"))
    text = format_table(rows, "MB_num per step (err_pool: propagated pool errors; err_seed: scatter over seeds)")
    text += "\n\n" + format_table(finals, "Final MB against c_l/c_t")
    return Report("mb_ratio", rows, csv_path, png_path, text, {"final": finals})


def main(argv=None) -> int:
    """``python analysis/mb_ratio.py FILES... [-o OUTDIR]``."""
    return script_main(run, "MB_num per step with pool and seed errors; final MB vs c_l/c_t", argv)
