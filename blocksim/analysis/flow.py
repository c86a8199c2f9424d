"""The coarse-graining flow: MB_num(step) and the per-volume absorption against log_{N0}(L/L_1).

The per-volume absorption at fixed (T, ω) is ε̇ = −2A²k²ω Im χ (Eq. 3.1 of [ZL], Im χ = (1 − e^{−βω})
Im χ̃), so −Im χ_{l,t} at the reference point (``/summary/im_chi_l_ref``, ``im_chi_t_ref``) is ε̇ in units
of 2A²k²ω. The analytic recursion (4.1) solved as Eq. (4.2) predicts a straight line in the number of
steps, ε̇(L) = a + b·log_{N0}(L/L_1) with a = ε̇(L_1) (+ ε̇^(2,3)) and b = v̇ (Eq. 3.7). We fit that line
(:func:`fit_log_flow`) for l and t and overlay it; the asymptotic MB of the fitted recursion is
sqrt(b_l/b_t) (Eq. 4.5), reported next to c_l/c_t.

Errors: with several replicates per setup the points carry the standard error over seeds and the fit
is weighted (χ²/dof reported); with one file the fit is unweighted and the parameter errors come from
the residual scatter.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InputError
from ..theory.recursion import log_flow
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
from .mb_ratio import combine_replicates, step_mb

__all__ = ["fit_log_flow", "reference_absorption", "flow_rows", "run", "main"]


def fit_log_flow(x, y, sigma=None) -> dict:
    """Least-squares fit of y = a + b·x (x = log_{N0}(L/L_1), Eq. 4.2 of [ZL]).

    ``sigma``: absolute standard errors of y (weighted fit, covariance (AᵀWA)^{-1}); None: unweighted,
    covariance scaled by the residual variance (needs ≥ 3 points, else the errors are NaN).
    Returns ``{"a", "b", "err_a", "err_b", "chi2_dof", "n"}``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise InputError(f"flow: need ≥ 2 steps to fit a + b·log(L/L1) (got {x.size})")
    a_mat = np.stack([np.ones_like(x), x], axis=1)
    if sigma is not None and np.all(np.isfinite(sigma)) and np.all(np.asarray(sigma) > 0):
        w = 1.0 / np.asarray(sigma, dtype=float) ** 2
        cov = np.linalg.inv(a_mat.T @ (w[:, None] * a_mat))
        coef = cov @ (a_mat.T @ (w * y))
        resid = y - a_mat @ coef
        dof = x.size - 2
        chi2_dof = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    else:
        coef, *_ = np.linalg.lstsq(a_mat, y, rcond=None)
        resid = y - a_mat @ coef
        dof = x.size - 2
        s2 = float(resid @ resid / dof) if dof > 0 else float("nan")
        cov = np.linalg.inv(a_mat.T @ a_mat) * s2
        chi2_dof = float("nan")
    return {
        "a": float(coef[0]),
        "b": float(coef[1]),
        "err_a": float(math.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else float("nan"),
        "err_b": float(math.sqrt(cov[1, 1])) if np.isfinite(cov[1, 1]) else float("nan"),
        "chi2_dof": chi2_dof,
        "n": int(x.size),
    }


def reference_absorption(traj):
    """Per-step ``(−Im χ_l, −Im χ_t)`` at the reference point, arrays [K] (units of Im χ in the file).

    From ``/summary/im_chi_{l,t}_ref``; if absent, from each step's arrays at the lowest temperature
    and the middle of the ω grid.
    """
    k = len(traj.steps)
    s = traj.summary
    if "im_chi_l_ref" in s and "im_chi_t_ref" in s and np.asarray(s["im_chi_l_ref"]).shape[0] >= k:
        return -np.asarray(s["im_chi_l_ref"], dtype=float)[:k], -np.asarray(s["im_chi_t_ref"], dtype=float)[:k]
    l_, t_ = [], []
    for st in traj.steps:
        j = st.omega.size // 2
        l_.append(-float(st.im_chi_l[0, j]))
        t_.append(-float(st.im_chi_t[0, j]))
    return np.array(l_), np.array(t_)


def _group_flow(group):
    k = common_steps(group)
    n0 = n0_of(group[0])
    scale = np.array([group[0].steps[i].scale_L for i in range(k)])
    x = np.log(scale / scale[0]) / math.log(n0)
    absl, abst = zip(*(reference_absorption(t) for t in group))
    el, _, sl = combine_replicates(np.array([a[:k] for a in absl]))
    et, _, st = combine_replicates(np.array([a[:k] for a in abst]))
    mbv, mbe = zip(*(step_mb(t) for t in group))
    mb, mb_pool, mb_seed = combine_replicates(np.array([m[:k] for m in mbv]), np.array([e[:k] for e in mbe]))
    weighted = len(group) >= 2
    fit_l = fit_log_flow(x, el, sl if weighted else None)
    fit_t = fit_log_flow(x, et, st if weighted else None)
    return {
        "n0": n0,
        "x": x,
        "scale": scale,
        "eps_l": el,
        "eps_t": et,
        "err_l": sl,
        "err_t": st,
        "mb": mb,
        "mb_err": mb_seed if weighted else mb_pool,
        "fit_l": fit_l,
        "fit_t": fit_t,
        "cl_over_ct": cl_over_ct_of(group[0]),
        "replicates": len(group),
    }


def flow_rows(trajs):
    """Per-group flow data and fits: ``(rows, fits, groups)``; rows one per (group, step)."""
    rows, fits, groups = [], [], []
    for gi, group in enumerate(group_replicates(trajs)):
        g = _group_flow(group)
        groups.append(g)
        for i in range(g["x"].size):
            rows.append(
                {
                    "group": gi,
                    "step": group[0].steps[i].index,
                    "log_n0_L_over_L1": float(g["x"][i]),
                    "mb": float(g["mb"][i]),
                    "mb_err": float(g["mb_err"][i]),
                    "minus_im_chi_l": float(g["eps_l"][i]),
                    "err_l": float(g["err_l"][i]),
                    "minus_im_chi_t": float(g["eps_t"][i]),
                    "err_t": float(g["err_t"][i]),
                    "fit_l": float(log_flow(g["scale"][i] / g["scale"][0], g["fit_l"]["a"], g["fit_l"]["b"], g["n0"])),
                    "fit_t": float(log_flow(g["scale"][i] / g["scale"][0], g["fit_t"]["a"], g["fit_t"]["b"], g["n0"])),
                }
            )
        fl, ft = g["fit_l"], g["fit_t"]
        ratio = fl["b"] / ft["b"] if ft["b"] != 0 else float("nan")
        fits.append(
            {
                "group": gi,
                "cl_over_ct": g["cl_over_ct"],
                "replicates": g["replicates"],
                "a_l": fl["a"],
                "err_a_l": fl["err_a"],
                "b_l": fl["b"],
                "err_b_l": fl["err_b"],
                "chi2dof_l": fl["chi2_dof"],
                "a_t": ft["a"],
                "err_a_t": ft["err_a"],
                "b_t": ft["b"],
                "err_b_t": ft["err_b"],
                "chi2dof_t": ft["chi2_dof"],
                "mb_asymptotic": math.sqrt(ratio) if ratio > 0 else float("nan"),
            }
        )
    return rows, fits, groups


def run(files, outdir="analysis-out", **_options) -> Report:
    """Write ``flow.csv``, ``flow_fit.csv`` and ``flow.png`` under ``outdir``."""
    trajs = load_trajectories(files)
    rows, fits, groups = flow_rows(trajs)
    csv_path = write_table(rows, os.path.join(outdir, "flow.csv"))
    write_table(fits, os.path.join(outdir, "flow_fit.csv"))
    fig, axes = new_figure(ncols=2)
    ax_mb, ax_abs = axes[0, 0], axes[0, 1]
    for gi, (g, f) in enumerate(zip(groups, fits)):
        xs = np.linspace(0.0, g["x"][-1], 50)
        lab = f"c_l/c_t={g['cl_over_ct']:.3g}"
        line = ax_mb.errorbar(g["x"], g["mb"], yerr=g["mb_err"], marker="o", capsize=3, label=f"MB_num, {lab}")
        col = line[0].get_color()
        ax_mb.axhline(g["cl_over_ct"], color=col, ls="--", lw=1)
        fl, ft = g["fit_l"], g["fit_t"]
        with np.errstate(invalid="ignore"):
            mb_fit = np.sqrt((fl["a"] + fl["b"] * xs) / (ft["a"] + ft["b"] * xs))
        ax_mb.plot(xs, mb_fit, color=col, ls=":", label="sqrt of fitted (4.2) ratio")
        for key, fit, mk in (("l", fl, "o"), ("t", ft, "s")):
            pts = ax_abs.errorbar(g["x"], g[f"eps_{key}"], yerr=g[f"err_{key}"], marker=mk, ls="none", capsize=3,
                                  label=f"−Im χ_{key}, {lab}")
            ax_abs.plot(xs, fit["a"] + fit["b"] * xs, color=pts[0].get_color(),
                        label=f"(4.2): {fit['a']:.3g} + ({fit['b']:.3g}±{fit['err_b']:.2g})·log_N0(L/L1)")
    ax_mb.set_xlabel("log_N0(L/L1)")
    ax_mb.set_ylabel("MB_num")
    ax_mb.set_title("MB flow (dashed: c_l/c_t)")
    ax_mb.legend(fontsize=7)
    ax_abs.set_xlabel("log_N0(L/L1)")
    ax_abs.set_ylabel("per-volume absorption −Im χ (ref. T, ω)")
    ax_abs.set_title("absorption flow with the recursion fit (Eq. 4.2)")
    ax_abs.legend(fontsize=7)
    png_path = save_figure(fig, os.path.join(outdir, "flow.png"))
    text = format_table(rows, "Flow per step (−Im χ at the reference point = ε̇ in units of 2A²k²ω)")
    text += "\n\n" + format_table(fits, "Fit of Eq. (4.2): −Im χ = a + b·log_N0(L/L1); MB_asymptotic = sqrt(b_l/b_t)")
    return Report("flow", rows, csv_path, png_path, text, {"fits": fits})


def main(argv=None) -> int:
    """``python analysis/flow.py FILES... [-o OUTDIR]``."""
    return script_main(run, "MB and absorption flow against log_N0(L/L1) with the Eq. (4.2) fit", argv)
