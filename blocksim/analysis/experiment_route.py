"""The experimentalists' route to γ_l/γ_t: sound-velocity shifts Δc/c = C ln(T/T0) from Re χ(T).

Relation and sign (derived from elasticity; documented in ``docs/analysis.md``)
------------------------------------------------------------------------------
χ = δ⟨T⟩/δe (Eq. 2.6 of [ZL]) is the non-elastic stress per unit strain per volume, so it adds to the
elastic modulus of the mode: M_a = ρc_a² + Re χ_a(T, ω) (a = l: M = C_11; a = t: M = C_44). With
c = sqrt(M/ρ), Δc/c = ½ ΔM/M, hence

    Δc_a/c_a = + Re χ_a(T, ω)/(2ρc_a²).

In the sign convention of [ZL] (Im χ < 0 for ω > 0) the static Re χ is negative (second-order energy
lowering: the TLS soften the solid), and it becomes less negative as T rises and the resonant
transitions saturate, so C > 0 as measured. (A minus sign, Δc/c = −Re χ/(2ρc²), belongs to the opposite
sign convention χ_std = −χ.) In engine units ρc_t² = 1 and ρc_l² = (c_l/c_t)²; the physical C is g
times the engine value when χ is per L_1³ (BRIEF §2).

Then C_a = (dRe χ_a/d ln T)/(2ρc_a²) from a straight-line fit over the chosen T range, and
[MB88]'s inference γ_l/γ_t = sqrt(C_l c_l²/(C_t c_t²)) = sqrt(slope_l/slope_t) (the ρc² cancel). It is
reported next to MB_num = sqrt(Im χ_l/Im χ_t) at the same ω and the lowest T of the fit range.
BRIEF §1b: the two agree iff C_l c_l²/(C_t c_t²) = Im χ_l/Im χ_t.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InputError
from . import Report, script_main
from .flow import fit_log_flow
from .loading import cl_over_ct_of, format_table, load_trajectories, new_figure, save_figure, write_table
from .spectra_plot import select_steps

__all__ = ["velocity_shift", "route_for_step", "route_rows", "applies", "run", "main"]


def velocity_shift(re_chi, rho_c2):
    """Δc/c = Re χ/(2ρc²) (derived in the module docstring; dimensionless when χ and ρc² share units)."""
    return np.asarray(re_chi, dtype=float) / (2.0 * rho_c2)


def route_for_step(step, cl_over_ct, *, omega=None, t_min=None, t_max=None) -> dict:
    """Slopes C_l, C_t and the two MB estimates for one step at the stored ω nearest ``omega``.

    ``omega`` default: the lowest stored ω where Im χ_l and Im χ_t are non-zero at every T. Fit range: T in [t_min, t_max] (defaults: T ≥ ω, i.e. the
    regime k_B T ≳ ħω where Δc/c ∝ ln T holds, and all T above; if fewer than 3 points qualify, all T).
    """
    w = np.asarray(step.omega)
    if omega is None:
        # the lowest stored ω at which both Im χ_l and Im χ_t carry weight at every temperature
        # (binned spectra are exactly 0 below the lowest transition, where MB_num is undefined)
        has_weight = np.all((np.asarray(step.im_chi_l) != 0) & (np.asarray(step.im_chi_t) != 0), axis=0)
        j = int(np.argmax(has_weight)) if has_weight.any() else 0
    else:
        j = int(np.argmin(np.abs(w - float(omega))))
    t = np.asarray(step.temperature)
    lo = w[j] if t_min is None else float(t_min)
    hi = np.inf if t_max is None else float(t_max)
    sel = (t >= lo) & (t <= hi) & (t > 0)
    if np.count_nonzero(sel) < 3:
        sel = t > 0
    if np.count_nonzero(sel) < 2:
        raise InputError(f"temperatures: need ≥ 2 positive temperatures for the ln T fit (have {t.tolist()})")
    ln_t = np.log(t[sel])
    dcc_l = velocity_shift(step.re_chi_l[sel, j], cl_over_ct**2)
    dcc_t = velocity_shift(step.re_chi_t[sel, j], 1.0)
    fl = fit_log_flow(ln_t, dcc_l)
    ft = fit_log_flow(ln_t, dcc_t)
    c_l, c_t = fl["b"], ft["b"]
    q = c_l * cl_over_ct**2 / c_t if c_t != 0 else float("nan")
    k0 = int(np.argmax(sel))
    im_ratio = step.im_chi_l[k0, j] / step.im_chi_t[k0, j] if step.im_chi_t[k0, j] != 0 else float("nan")
    return {
        "step": step.index,
        "omega": float(w[j]),
        "t_fit_min": float(t[sel].min()),
        "t_fit_max": float(t[sel].max()),
        "C_l": c_l,
        "err_C_l": fl["err_b"],
        "C_t": c_t,
        "err_C_t": ft["err_b"],
        "gamma_ratio_route": math.sqrt(q) if q > 0 else float("nan"),
        "mb_num": math.sqrt(im_ratio) if im_ratio > 0 else float("nan"),
        "cl_over_ct": cl_over_ct,
        "_ln_t": ln_t,
        "_dcc_l": dcc_l,
        "_dcc_t": dcc_t,
        "_fit_l": fl,
        "_fit_t": ft,
    }


def route_rows(trajs, *, steps=None, omega=None, t_min=None, t_max=None):
    """One result per (file, step); default step: the last complete one."""
    out = []
    for traj in trajs:
        chosen = select_steps(traj, steps) if steps is not None else [traj.steps[-1]]
        for st in chosen:
            res = route_for_step(st, cl_over_ct_of(traj), omega=omega, t_min=t_min, t_max=t_max)
            res["file"] = traj.name
            out.append(res)
    return out


def applies(traj) -> bool:
    """Whether the trajectory stores the ≥ 2 positive temperatures the ln T fit needs (its last step)."""
    if not traj.steps:
        return False
    return int(np.count_nonzero(np.asarray(traj.steps[-1].temperature) > 0)) >= 2


def run(files, outdir="analysis-out", steps=None, omega=None, t_min=None, t_max=None, **_options) -> Report:
    """Write ``experiment_route.csv`` and ``experiment_route.png`` (Δc/c against ln T with the fits)."""
    trajs = load_trajectories(files)
    results = route_rows(trajs, steps=steps, omega=omega, t_min=t_min, t_max=t_max)
    rows = [{"file": r["file"], **{k: v for k, v in r.items() if not k.startswith("_") and k != "file"}} for r in results]
    csv_path = write_table(rows, os.path.join(outdir, "experiment_route.csv"))
    fig, axes = new_figure()
    ax = axes[0, 0]
    for r in results[:6]:
        for key, mk in (("l", "o"), ("t", "s")):
            fit = r[f"_fit_{key}"]
            pts, = ax.plot(r["_ln_t"], r[f"_dcc_{key}"], mk, label=f"{r['file']} step {r['step']}: {key}")
            ax.plot(r["_ln_t"], fit["a"] + fit["b"] * r["_ln_t"], color=pts.get_color(), lw=1,
                    label=f"C_{key} = {fit['b']:.3g}")
    ax.set_xlabel("ln T  (T in E*)")
    ax.set_ylabel("Δc/c = Re χ/(2ρc²)  (engine units, ρc_t² = 1)")
    ax.set_title("velocity shift and slopes C_l, C_t")
    ax.legend(fontsize=7)
    png_path = save_figure(fig, os.path.join(outdir, "experiment_route.png"))
    text = format_table(rows, "Experiment route: γ_l/γ_t = sqrt(C_l c_l²/(C_t c_t²)) vs MB_num = sqrt(Im χ_l/Im χ_t)")
    return Report("experiment_route", rows, csv_path, png_path, text)


def _options(parser):
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="step indices (default: last)")
    parser.add_argument("--omega", type=float, default=None, help="probe ω [E*] (default: lowest stored)")
    parser.add_argument("--t-min", dest="t_min", type=float, default=None, help="lowest T of the ln T fit [E*]")
    parser.add_argument("--t-max", dest="t_max", type=float, default=None, help="highest T of the ln T fit [E*]")


def main(argv=None) -> int:
    """``python analysis/experiment_route.py FILES... [-o OUTDIR] [--omega W] [--t-min T] [--t-max T]``."""
    return script_main(run, "C_l, C_t from Re χ(T) and γ_l/γ_t = sqrt(C_l c_l²/(C_t c_t²))", argv, _options)
