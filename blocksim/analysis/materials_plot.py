"""Theory against experiment for the 13 glasses of Sec. IV of [ZL] (its Fig. 1), plus simulated MB.

The table and both least-squares fits through the origin (all 13 materials; the 10 without As2S3,
PMMA, PS) come from :mod:`blocksim.model.materials` (paper: 1.102, r = 0.261 and 1.061, r = 0.745). The
figure shows MB_theo = c_l/c_t against MB_exp = γ_l/γ_t, both fitted lines and the dashed line y = x.

Simulated MB: for every trajectory whose config ``model.cl_over_ct`` matches a material's c_l/c_t
(the ratio of the tabulated velocities, to within ``match_tol``, default 0.01 absolute), the final-step
MB_num (mean over the matching replicates, error as in :mod:`.mb_ratio`) is plotted at that material's
MB_exp and listed in the table.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..model import materials as _materials
from . import Report, script_main
from .loading import cl_over_ct_of, format_table, group_replicates, load_trajectories, new_figure, save_figure, write_table
from .mb_ratio import combine_replicates, step_mb

__all__ = ["simulated_by_ratio", "materials_rows", "run", "main"]


def simulated_by_ratio(trajs) -> list:
    """Final MB per setup: ``[(cl_over_ct, mb, err, replicates)]`` (see :mod:`.mb_ratio`)."""
    out = []
    for group in group_replicates(trajs):
        finals = np.array([[step_mb(t)[0][-1]] for t in group])
        errs = np.array([[step_mb(t)[1][-1]] for t in group])
        mean, err_pool, err_seed = combine_replicates(finals, errs)
        err = err_seed[0] if len(group) >= 2 else err_pool[0]
        out.append((cl_over_ct_of(group[0]), float(mean[0]), float(err), len(group)))
    return out


def materials_rows(trajs=(), match_tol=0.01):
    """One row per material: MB_exp, MB_theo (printed columns), c_l/c_t from the velocities, and the
    simulated MB (NaN where no trajectory matches)."""
    sims = simulated_by_ratio(trajs) if trajs else []
    rows = []
    for m in _materials.load_materials():
        ratio = m.cl_km_s / m.ct_km_s
        match = [s for s in sims if abs(s[0] - ratio) <= match_tol]
        best = min(match, key=lambda s: abs(s[0] - ratio)) if match else None
        rows.append(
            {
                "material": m.material,
                "mb_exp": m.mb_exp,
                "mb_theo": m.mb_theo,
                "cl_over_ct": ratio,
                "mb_sim": best[1] if best else float("nan"),
                "mb_sim_err": best[2] if best else float("nan"),
                "sim_cl_over_ct": best[0] if best else float("nan"),
                "replicates": best[3] if best else 0,
            }
        )
    return rows


def run(files=(), outdir="analysis-out", match_tol=0.01, **_options) -> Report:
    """Write ``materials.csv``, ``materials_fits.csv`` and ``materials.png`` (files are optional)."""
    trajs = load_trajectories(files) if files else []
    rows = materials_rows(trajs, match_tol)
    report = _materials.materials_report()
    fits = [
        {"fit": "all", "n": report.fit_all.n, "slope": report.fit_all.slope, "r": report.fit_all.r,
         "paper_slope": _materials.PAPER_FITS["all"][0], "paper_r": _materials.PAPER_FITS["all"][1]},
        {"fit": "subset", "n": report.fit_subset.n, "slope": report.fit_subset.slope, "r": report.fit_subset.r,
         "paper_slope": _materials.PAPER_FITS["subset"][0], "paper_r": _materials.PAPER_FITS["subset"][1]},
    ]
    csv_path = write_table(rows, os.path.join(outdir, "materials.csv"))
    write_table(fits, os.path.join(outdir, "materials_fits.csv"))
    fig, axes = new_figure(size=(6.0, 5.0))
    ax = axes[0, 0]
    excluded = set(report.excluded)
    x = np.array([r["mb_exp"] for r in rows])
    y = np.array([r["mb_theo"] for r in rows])
    mask = np.array([r["material"] in excluded for r in rows])
    ax.plot(x[~mask], y[~mask], "o", color="C0", label="MB_theo = c_l/c_t")
    ax.plot(x[mask], y[mask], "o", mfc="none", color="C0", label="excluded (As2S3, PMMA, PS)")
    for r in rows:
        ax.annotate(r["material"], (r["mb_exp"], r["mb_theo"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    xs = np.linspace(1.3, 2.0, 10)
    ax.plot(xs, report.fit_all.slope * xs, color="C1",
            label=f"fit, 13: y = {report.fit_all.slope:.3f}x, r = {report.fit_all.r:.3f}")
    ax.plot(xs, report.fit_subset.slope * xs, color="C2",
            label=f"fit, 10: y = {report.fit_subset.slope:.3f}x, r = {report.fit_subset.r:.3f}")
    ax.plot(xs, xs, "k--", lw=1, label="y = x")
    sim = [r for r in rows if not math.isnan(r["mb_sim"])]
    if sim:
        ax.errorbar([r["mb_exp"] for r in sim], [r["mb_sim"] for r in sim], yerr=[r["mb_sim_err"] for r in sim],
                    fmt="s", color="C3", capsize=3, label="simulated MB_num at the material's c_l/c_t")
    ax.set_xlabel("MB_exp = γ_l/γ_t  [MB88]")
    ax.set_ylabel("MB_theo")
    ax.set_title("Meissner–Berret ratio: theory vs experiment (Fig. 1 of [ZL])")
    ax.legend(fontsize=7, loc="upper left")
    png_path = save_figure(fig, os.path.join(outdir, "materials.png"))
    text = format_table(rows, "Materials (Sec. IV of [ZL]) with simulated MB where a trajectory matches c_l/c_t")
    text += "\n\n" + format_table(fits, "Least-squares fits through the origin (blocksim.model.materials)")
    return Report("materials", rows, csv_path, png_path, text, {"fits": fits})


def _options(parser):
    parser.add_argument("--match-tol", dest="match_tol", type=float, default=0.01,
                        help="|c_l/c_t(config) − c_l/c_t(material)| for a match (default 0.01)")


def main(argv=None) -> int:
    """``python analysis/materials.py [FILES...] [-o OUTDIR]``."""
    return script_main(run, "Fig. 1 of [ZL] with both fits, plus simulated MB per material", argv, _options)
