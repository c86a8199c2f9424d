"""Convergence of the coarse-graining flow in ``rg.n_keep`` and in the samples, and its extrapolation to R.

Per-volume absorption (Eq. 3.1 and Sec. IV of [ZL]): ε̇_a(L) = L^{-3} Ė_a^single(L) = −2A²k²ω Im χ_a per
unit volume. A step k stores the band weight W_a = ∫_band Im χ_a dω at the reference temperature
(``reference/weight_l``, ``weight_t``), mean per super block, with V = one super block of size
L = ``scale_L_out`` = N0^(k+1) L_1 (docs/trajectory-format.md). So, in units of 2A²k²ω·T*²/L_1³ (band
integral, fixed volume L_1³):

    ε̇_a(k) = −W_a(k) / scale_L_out(k)³,     x_k = log_{N0}(scale_L_out(k)/L_1),
    Δε̇_a(k) = ε̇_a(k) − ε̇_a(k−1)            (the per-step increment; v̇ + ε̇^(2,3) of Eq. 4.1).

Errors (per file) come from the step's independent units (docs/tree.md): the per-unit weights
(contiguous groups of P_out/n_effective super blocks; one entry per unit for 'tree') give per-unit
ε̇_u and σ = std(ε̇_u)/sqrt(n) (the delete-one jackknife of a mean), and the l–t covariance
cov(ε̇_l,u, ε̇_t,u)/n. The increment is paired: each unit of step k is matched to the units of step
k−1 it contains (``'partition'``: its members; ``'tree'``: the contiguous sub-units, paths in order;
``'resample'``: the same replicate pool), Δ_u = ε̇_k,u − mean(ε̇_{k−1} of those units), σ_Δ =
std(Δ_u)/sqrt(n_k). That accounts for the correlation between steps (they share bare blocks). Where
the pairing cannot be established the bound σ_Δ ≤ σ_k + σ_{k−1} (|ρ| ≤ 1) is quoted (``err_method =
'bound'``). Steps marked unreliable (n_effective < rg.min_effective_samples) get NaN errors, as in the
file; nothing invents an error. Replicates (files that differ only in ``[run]``) are averaged; the
error is the propagated per-file error sqrt(Σσ_i²)/n, or the seed scatter where no per-file error
exists (n ≥ 2).

Extrapolation: ε̇_a(x) = a_a + b_a x (Eq. 4.2: a = ε̇(L_1) + ε̇^(2,3), b = v̇), fitted by
:func:`.flow.fit_log_flow` weighted by σ over the reliable steps with finite errors (``skip_steps``
drops the first steps), evaluated at x_R = log_{N0}(R/L_1) by
:func:`blocksim.theory.recursion.recursion_solution` (ε̇^(2,3) dropped, as in the paper). The band is
the fit covariance propagated to x_R (absolute σ; χ²/dof is reported beside it and ``band_scaled``
multiplies by sqrt(max(1, χ²/dof))). Steps are treated as independent in the fit (they are positively
correlated through shared bare blocks, so the band may be too small). MB(R) = sqrt(ε̇_l(R)/ε̇_t(R)) (NaN
unless both are positive) with the l–t covariance of the two predictions, Σ_k c_l,k c_t,k cov_lt,k (c: the fit's linear weights).
Beside it: sqrt(b_l/b_t) (Eq. 4.5 of the fitted recursion), the self-consistent Eq. (4.5) value
(:func:`~blocksim.theory.recursion.mb_fixed_point`) and c_l/c_t, and whether MB(R) lies closer to
c_l/c_t than the last measured step ("toward"/"away" when the change of |MB − c_l/c_t| exceeds
:data:`SIGNIFICANCE` combined errors, else "undecided").

Interaction route (truncation-free). The fixed-band ε̇ above falls from step to step mostly because the
truncation to n_keep levels discards the weight of the states it drops (docs/findings.md). Each step
also stores the band weight of its members uncoupled (``reference/weight_pool_l``, ``weight_pool_t``,
same units), so the interaction's own increment of step k is the ratio on the same units,

    r_a(k) = Σ_u W_a,u / Σ_u W_pool,a,u − 1          (delete-one jackknife over the units, l–t covariance),

which is Eq. (4.1)'s v̇/ε̇ at that scale (and the quantity of ``recursion_check`` at step 0). Chaining it
from the bare per-volume absorption (the pool of step 0 per L_1³) gives a truncation-free flow
ε̇*_a(k) = ε̇_a,bare·Π_{j≤k}(1 + r_a(j)) and MB*(k) = sqrt(ε̇*_l/ε̇*_t), whose errors add the steps'
var(ln(1 + r)) as independent (an approximation: the steps share bare blocks). ε̇* goes through the same
Eq. (4.2) fit and extrapolation (``route = "interaction"`` in the extrapolation table). It assumes that
the kept levels carry the same relative interaction increment as the discarded ones.

Lengths L_1 and R are in metres (defaults 50 Å and 1 mm). A file whose c_l/c_t matches a material of
Sec. IV (within ``match_tol``, as ``blocksim analyze`` matches materials) uses that material's lengths
from ``material_lengths`` when given; the table of Sec. IV has no lengths, so otherwise the defaults.

Convergence tables: files that describe the same setup except ``rg.n_keep`` (resp. ``rg.samples`` and
``rg.pool_size``) form a series; per step and variant, MB and ε̇ and their difference to the largest
n_keep (resp. most independent units) in combined standard errors sqrt(σ² + σ_ref²) (variants treated
as independent; with a common seed they share draws, which makes this conservative for positive
correlation).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InputError, suggest
from ..model.materials import load_materials
from ..theory.recursion import mb_fixed_point, recursion_solution
from . import Report, script_main
from .flow import fit_log_flow
from .loading import (
    cl_over_ct_of,
    common_steps,
    config_value,
    format_table,
    load_trajectories,
    n0_of,
    new_figure,
    save_figure,
    write_table,
)
from .mb_ratio import combine_replicates, step_mb

__all__ = [
    "DEFAULT_L1_M",
    "DEFAULT_R_M",
    "SIGNIFICANCE",
    "SERIES",
    "check_lengths",
    "parse_material_lengths",
    "file_absorption",
    "variant_flow",
    "interaction_flow",
    "group_variants",
    "convergence_series",
    "extrapolate",
    "run",
    "add_options",
    "main",
]

#: Default microscopic length L_1 (50 Å) and experimental length R (1 mm) of Sec. IV of [ZL], in metres.
DEFAULT_L1_M = 50e-10
DEFAULT_R_M = 1e-3
#: Combined standard errors by which |MB − c_l/c_t| must change to call the trend "toward"/"away".
SIGNIFICANCE = 2.0
#: χ²/dof above which the extrapolation notes that the Eq. (4.2) line does not describe the steps.
CHI2_REJECT = 3.0
#: The config keys a convergence series varies.
SERIES = {"n_keep": ("rg.n_keep",), "samples": ("rg.samples", "rg.pool_size")}
#: Config keys that do not change the physics of a step (run options, guards, the number of steps).
_IGNORED = ("run.", "rg.min_effective_samples", "rg.max_initial_pool", "rg.diversity_warn", "rg.steps",
            "rg.r_over_l1", "solver.batched")


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------
def check_lengths(l1_m, r_m) -> tuple[float, float]:
    """``(L1, R)`` in metres as floats; InputError unless 0 < L1 < R, both finite."""
    try:
        l1, r = float(l1_m), float(r_m)
    except (TypeError, ValueError):
        raise InputError(f"--L1/--R = {l1_m!r}/{r_m!r}: must be numbers (metres)") from None
    for name, v in (("--L1", l1), ("--R", r)):
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{name} = {v!r}: must be a positive length in metres")
    if r <= l1:
        raise InputError(f"--R = {r!r}: must exceed --L1 = {l1!r} (metres)")
    return l1, r


def parse_material_lengths(items) -> dict:
    """``["a-SiO2=5e-9,1e-3", ...]`` → ``{"a-SiO2": (L1, R)}`` (metres); names from the Sec. IV table."""
    names = [m.material for m in load_materials()]
    out = {}
    for item in items or ():
        name, sep, rest = str(item).partition("=")
        parts = rest.split(",")
        if not sep or len(parts) != 2:
            raise InputError(f"--material-lengths = {item!r}: must be NAME=L1,R (metres)")
        if name not in names:
            raise InputError(f"--material-lengths: material = {name!r}: must be one of {', '.join(names)}"
                             f"{suggest(name, names)}")
        out[name] = check_lengths(*parts)
    return out


def _check_skip(skip_steps) -> int:
    if isinstance(skip_steps, bool) or not isinstance(skip_steps, (int, np.integer)) or skip_steps < 0:
        raise InputError(f"--skip-steps = {skip_steps!r}: must be an integer ≥ 0")
    return int(skip_steps)


# --------------------------------------------------------------------------------------------
# Per-step absorption and its increment, one file
# --------------------------------------------------------------------------------------------
def _scale_out(traj, i: int) -> float:
    st = traj.steps[i]
    return float(st.scale_L_out) if getattr(st, "scale_L_out", None) is not None else float(n0_of(traj) * st.scale_L)


def _unit_means(st, name_l: str, name_t: str):
    """Per-unit means ``(l [n], t [n])`` of the per-super-block (tree: per-unit) datasets, or None if absent."""
    wl, wt = getattr(st, name_l, None), getattr(st, name_t, None)
    if wl is None or wt is None:
        return None
    wl, wt = np.ravel(wl).astype(float), np.ravel(wt).astype(float)
    n_eff = int(st.n_effective) if getattr(st, "n_effective", None) is not None else wl.size
    if n_eff < 1 or wl.size != wt.size or wl.size % n_eff:
        return None
    size = wl.size // n_eff
    return wl.reshape(n_eff, size).mean(axis=1), wt.reshape(n_eff, size).mean(axis=1)


def _units(traj, i: int, volume: float):
    """Per-unit ``(ε̇_l [n], ε̇_t [n])`` of step i, or None without per-unit weights."""
    w = _unit_means(traj.steps[i], "weight_l", "weight_t")
    return None if w is None else (-w[0] / volume, -w[1] / volume)


def _pool_units(traj, i: int):
    """Per-unit ``(W_pool,l [n], W_pool,t [n])`` (mean per super block) of step i, or None (older files)."""
    return _unit_means(traj.steps[i], "weight_pool_l", "weight_pool_t")


def _ratio_jackknife(a_l, b_l, a_t, b_t):
    """``(R_l, R_t, σ_l, σ_t, cov_lt)`` of R = Σa/Σb − 1 by the delete-one jackknife over the units."""
    r_l, r_t = a_l.sum() / b_l.sum() - 1.0, a_t.sum() / b_t.sum() - 1.0
    n = a_l.size
    if n < 2:
        return r_l, r_t, float("nan"), float("nan"), float("nan")
    loo_l = (a_l.sum() - a_l) / (b_l.sum() - b_l)
    loo_t = (a_t.sum() - a_t) / (b_t.sum() - b_t)
    dl, dt = loo_l - loo_l.mean(), loo_t - loo_t.mean()
    f = (n - 1) / n
    return r_l, r_t, math.sqrt(f * np.sum(dl * dl)), math.sqrt(f * np.sum(dt * dt)), float(f * np.sum(dl * dt))


def _interaction(traj, scale, reliable) -> dict:
    """The interaction route (module docstring): r_a(k), ε̇*_a(k), MB*(k) and their errors, arrays [K]."""
    k = len(traj.steps)
    out = {key: np.full(k, np.nan) for key in ("r_l", "r_t", "err_rl", "err_rt", "cov_r", "eps_int_l",
                                                "eps_int_t", "err_int_l", "err_int_t", "cov_int", "mb_int",
                                                "mb_int_err")}
    log_var = np.zeros(3)  # running var(ln ε̇*_l), var(ln ε̇*_t), cov(ln ε̇*_l, ln ε̇*_t)
    eps = None
    for i in range(k):
        pool, sb = _pool_units(traj, i), _units(traj, i, 1.0)
        if pool is None or sb is None or pool[0].size != sb[0].size:
            return out
        # sb holds −W (ε̇ at unit volume); the pool weights are W (negative on the diagonal)
        a_l, a_t, b_l, b_t = sb[0], sb[1], -pool[0], -pool[1]
        r_l, r_t, e_l, e_t, c_lt = _ratio_jackknife(a_l, b_l, a_t, b_t)
        ok = bool(reliable[i])
        out["r_l"][i], out["r_t"][i] = r_l, r_t
        if ok:
            out["err_rl"][i], out["err_rt"][i], out["cov_r"][i] = e_l, e_t, c_lt
        if i == 0:  # ε̇ of the bare blocks per volume L_1³: the pool of step 0, with its own error
            n = b_l.size
            vol = scale[0] ** 3
            eps = np.array([b_l.mean(), b_t.mean()]) / vol
            if n >= 2 and ok:
                c = np.cov(b_l, b_t) / n
                log_var = np.array([c[0, 0] / b_l.mean() ** 2, c[1, 1] / b_t.mean() ** 2,
                                    c[0, 1] / (b_l.mean() * b_t.mean())])
            else:
                log_var[:] = np.nan
        eps = eps * np.array([1.0 + r_l, 1.0 + r_t])
        if ok:
            log_var = log_var + np.array([e_l**2 / (1 + r_l) ** 2, e_t**2 / (1 + r_t) ** 2,
                                          c_lt / ((1 + r_l) * (1 + r_t))])
        else:
            log_var[:] = np.nan
        out["eps_int_l"][i], out["eps_int_t"][i] = eps
        out["err_int_l"][i], out["err_int_t"][i] = eps * np.sqrt(log_var[:2])
        out["cov_int"][i] = eps[0] * eps[1] * log_var[2]
        if eps[0] / eps[1] > 0:
            out["mb_int"][i] = math.sqrt(eps[0] / eps[1])
            out["mb_int_err"][i] = 0.5 * out["mb_int"][i] * math.sqrt(max(0.0, log_var[0] + log_var[1] - 2 * log_var[2]))
    return out


def _pairing(traj, i: int, n_prev: int, n_cur: int):
    """Index array [n_cur, r] of the units of step i−1 inside each unit of step i, or None (unknown)."""
    strategy = str(config_value(traj, "rg.pool_strategy", "partition"))
    if strategy == "partition":
        members = getattr(traj.steps[i], "members", None)
        if members is None:
            return None
        members = np.asarray(members, dtype=np.int64)
        if members.ndim != 2 or members.shape[0] != n_cur or members.size != n_prev:
            return None
        if not np.array_equal(np.sort(members.ravel()), np.arange(n_prev)):
            return None
        return members
    if strategy in ("tree", "resample") and n_prev % n_cur == 0:
        return np.arange(n_prev).reshape(n_cur, n_prev // n_cur)
    return None


def _sem(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else float("nan")


def _reliable(st) -> bool:
    rel = getattr(st, "reliable", None)
    return True if rel is None else bool(np.ravel(rel)[0])


def file_absorption(traj) -> dict:
    """Per-step ε̇_l,t, their increments and errors for one trajectory (arrays [K]; module docstring).

    Keys: ``scale`` (L/L_1 of the super blocks), ``x`` = log_N0(scale), ``eps_l``, ``eps_t``, ``err_l``,
    ``err_t``, ``cov_lt``, ``d_l``, ``d_t`` (NaN at the first step), ``err_dl``, ``err_dt``, ``method``
    (list of str: "paired", "bound", "none"), ``reliable`` (bool), ``n_effective``, ``mb``, ``mb_err``.
    """
    k = len(traj.steps)
    n0 = n0_of(traj)
    scale = np.array([_scale_out(traj, i) for i in range(k)])
    out = {key: np.full(k, np.nan) for key in ("eps_l", "eps_t", "err_l", "err_t", "cov_lt", "d_l", "d_t",
                                                "err_dl", "err_dt")}
    out.update(scale=scale, x=np.log(scale) / math.log(n0), method=["none"] * k,
               reliable=np.array([_reliable(st) for st in traj.steps]),
               n_effective=np.array([int(getattr(st, "n_effective", None) or 0) for st in traj.steps]))
    out["mb"], out["mb_err"] = step_mb(traj)
    summ = traj.summary
    units = [_units(traj, i, scale[i] ** 3) for i in range(k)]
    for i in range(k):
        u = units[i]
        if u is not None:
            out["eps_l"][i], out["eps_t"][i] = u[0].mean(), u[1].mean()
            if out["reliable"][i] and u[0].size >= 2:
                out["err_l"][i], out["err_t"][i] = _sem(u[0]), _sem(u[1])
                out["cov_lt"][i] = float(np.cov(u[0], u[1])[0, 1] / u[0].size)
        elif "im_chi_l_ref" in summ and np.asarray(summ["im_chi_l_ref"]).shape[0] >= k:
            out["eps_l"][i] = -float(summ["im_chi_l_ref"][i]) / scale[i] ** 3
            out["eps_t"][i] = -float(summ["im_chi_t_ref"][i]) / scale[i] ** 3
        if i == 0:
            continue
        out["d_l"][i] = out["eps_l"][i] - out["eps_l"][i - 1]
        out["d_t"][i] = out["eps_t"][i] - out["eps_t"][i - 1]
        if not (out["reliable"][i] and out["reliable"][i - 1]) or units[i] is None or units[i - 1] is None:
            continue
        pair = _pairing(traj, i, units[i - 1][0].size, units[i][0].size)
        if pair is not None and pair.shape[0] >= 2:
            out["method"][i] = "paired"
            out["err_dl"][i] = _sem(units[i][0] - units[i - 1][0][pair].mean(axis=1))
            out["err_dt"][i] = _sem(units[i][1] - units[i - 1][1][pair].mean(axis=1))
        else:
            out["method"][i] = "bound"
            out["err_dl"][i] = out["err_l"][i] + out["err_l"][i - 1]
            out["err_dt"][i] = out["err_t"][i] + out["err_t"][i - 1]
    out.update(_interaction(traj, scale, out["reliable"]))
    return out


def _combine(values, errors):
    """Replicate mean with the propagated error, or the seed scatter where a file has no error."""
    mean, err_prop, err_seed = combine_replicates(values, errors)
    if np.asarray(values).shape[0] >= 2:
        err_prop = np.where(np.isfinite(err_prop), err_prop, err_seed)
    return mean, err_prop


def variant_flow(group) -> dict:
    """The flow of one variant (replicate files of one setup): :func:`file_absorption` averaged over files.

    Common steps only. A step is reliable only if it is in every file; its errors are NaN otherwise.
    """
    k = common_steps(group)
    per = [file_absorption(t) for t in group]
    out = {"scale": per[0]["scale"][:k], "x": per[0]["x"][:k], "replicates": len(group),
           "reliable": np.all([p["reliable"][:k] for p in per], axis=0),
           "n_effective": np.sum([p["n_effective"][:k] for p in per], axis=0),
           "method": [("paired" if all(p["method"][i] == "paired" for p in per) else
                       "bound" if all(p["method"][i] in ("paired", "bound") for p in per) else "none")
                      for i in range(k)],
           "steps": [st.index for st in group[0].steps[:k]]}
    for val, err in (("eps_l", "err_l"), ("eps_t", "err_t"), ("d_l", "err_dl"), ("d_t", "err_dt"),
                     ("mb", "mb_err"), ("r_l", "err_rl"), ("r_t", "err_rt"), ("eps_int_l", "err_int_l"),
                     ("eps_int_t", "err_int_t"), ("mb_int", "mb_int_err")):
        out[val], out[err] = _combine([p[val][:k] for p in per], [p[err][:k] for p in per])
        out[err] = np.where(out["reliable"], out[err], np.nan)
    n = len(group)
    out["cov_lt"] = np.sum([p["cov_lt"][:k] for p in per], axis=0) / n**2
    out["cov_int"] = np.sum([p["cov_int"][:k] for p in per], axis=0) / n**2
    return out


def interaction_flow(flow: dict) -> dict:
    """``flow`` (:func:`variant_flow`) with ε̇ and its errors replaced by the interaction route's ε̇*.

    The result goes through :func:`extrapolate` like the fixed-band flow (module docstring).
    """
    out = dict(flow)
    for a in ("l", "t"):
        out[f"eps_{a}"], out[f"err_{a}"] = flow[f"eps_int_{a}"], flow[f"err_int_{a}"]
    out["mb"], out["mb_err"] = flow["mb_int"], flow["mb_int_err"]
    out["cov_lt"] = flow["cov_int"]
    return out


# --------------------------------------------------------------------------------------------
# Grouping: replicates, variants and series
# --------------------------------------------------------------------------------------------
def _flat(table, prefix="") -> dict:
    out = {}
    for key, value in (table or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def _fingerprint(traj, drop=()) -> tuple:
    flat = _flat(traj.config)
    flat["lattice.n0"] = n0_of(traj)
    skip = tuple(_IGNORED) + tuple(drop)
    return tuple(sorted((k, repr(v)) for k, v in flat.items() if not any(k == s or (s.endswith(".") and
                                                                                   k.startswith(s)) for s in skip)))


def group_variants(trajs) -> list:
    """Replicate groups: files whose configs agree except ``[run]`` (seed, output, …) and run guards."""
    groups: dict = {}
    for t in trajs:
        groups.setdefault(_fingerprint(t), []).append(t)
    return list(groups.values())


def _variant_label(group, kind: str) -> str:
    return ", ".join(f"{key.split('.')[1]}={config_value(group[0], key, '?')}" for key in SERIES[kind])


def _variant_size(group, kind: str) -> float:
    if kind == "n_keep":
        return float(config_value(group[0], "rg.n_keep", 0))
    # independent units of the last step = the independent final samples (tree and resample: rg.samples;
    # partition: the final pool); step 0's count is capped by the tree's unit level, so not monotonic
    n_eff = [getattr(t.steps[-1], "n_effective", None) for t in group]
    if all(n is not None for n in n_eff):
        return float(sum(int(n) for n in n_eff))
    return float(len(group) * config_value(group[0], "rg.samples", 1) * config_value(group[0], "rg.pool_size", 1))


def convergence_series(trajs, kind: str) -> list:
    """Series of variants that differ only in the keys of ``SERIES[kind]``: ``[[variant group, ...], ...]``.

    Each series has ≥ 2 variants, sorted by increasing n_keep (resp. independent units at the last step); the
    last one is the reference.
    """
    if kind not in SERIES:
        raise InputError(f"kind = {kind!r}: must be one of {', '.join(SERIES)}")
    buckets: dict = {}
    for grp in group_variants(trajs):
        buckets.setdefault(_fingerprint(grp[0], SERIES[kind]), []).append(grp)
    return [sorted(v, key=lambda g: _variant_size(g, kind)) for v in buckets.values() if len(v) >= 2]


def _z(value, err, ref, ref_err) -> float:
    comb = math.hypot(err, ref_err)
    return (value - ref) / comb if comb > 0 else float("nan")


def _series_rows(series, kind: str, sid: int) -> list:
    flows = [variant_flow(g) for g in series]
    k = min(f["x"].size for f in flows)
    ref = flows[-1]
    rows = []
    for i in range(k):
        for grp, f in zip(series, flows):
            is_ref = f is ref
            row = {"series": f"{kind}-{sid}", "variant": _variant_label(grp, kind), "reference": is_ref,
                   "replicates": f["replicates"], "step": f["steps"][i], "log_n0_L_over_L1": float(f["x"][i]),
                   "reliable": bool(f["reliable"][i])}
            for val, err in (("mb", "mb_err"), ("eps_l", "err_l"), ("eps_t", "err_t")):
                row[val] = float(f[val][i])
                row[err] = float(f[err][i])
                row[f"z_{val}"] = float("nan") if is_ref else _z(f[val][i], f[err][i], ref[val][i], ref[err][i])
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Extrapolation to R
# --------------------------------------------------------------------------------------------
def _linear_weights(x, sigma, p):
    """c with p·θ̂ = c·y for the weighted least-squares line θ = (a, b) through (x, y ± sigma)."""
    a_mat = np.stack([np.ones_like(x), x], axis=1)
    w = 1.0 / sigma**2
    return np.asarray(p) @ np.linalg.inv(a_mat.T @ (w[:, None] * a_mat)) @ (a_mat.T * w)


def _sqrt_ratio(num, den, var_num, var_den, cov):
    """sqrt(num/den) and its propagated error (NaN unless num/den > 0)."""
    if not (den != 0 and num / den > 0):
        return float("nan"), float("nan")
    val = math.sqrt(num / den)
    rel2 = var_num / num**2 + var_den / den**2 - 2.0 * cov / (num * den)
    return val, 0.5 * val * math.sqrt(rel2) if rel2 >= 0 else float("nan")


def _trend(mb_r, err_r, mb_last, err_last, target) -> str:
    d = abs(mb_r - target) - abs(mb_last - target)
    sig = math.hypot(err_r, err_last)
    if not (math.isfinite(d) and math.isfinite(sig)):
        return "undecided (no error)"
    if d < -SIGNIFICANCE * sig:
        return "toward"
    if d > SIGNIFICANCE * sig:
        return "away"
    return f"undecided (within {SIGNIFICANCE:g}σ)"


def extrapolate(flow: dict, n0: int, r_over_l1: float, cl_over_ct: float, skip_steps: int = 0) -> dict:
    """Fit ε̇_a = a + b·x for l and t (reliable steps with finite errors, after ``skip_steps``) and evaluate
    at x_R = log_N0(R/L_1). ``flow`` is :func:`variant_flow`. Returns a flat dict (one table row);
    ``note`` says "not enough reliable steps" (and the values are NaN) when fewer than 2 steps qualify.
    """
    x_r = math.log(r_over_l1) / math.log(n0)
    steps = np.asarray(flow["steps"])
    use = (steps >= skip_steps) & flow["reliable"]
    for err in ("err_l", "err_t"):
        use &= np.isfinite(flow[err]) & (np.nan_to_num(flow[err]) > 0)
    row = {"x_R": x_r, "steps_used": int(use.sum()), "cl_over_ct": cl_over_ct,
           "mb_fixed_point_eq45": mb_fixed_point(cl_over_ct)}
    last = np.nonzero(flow["reliable"] & np.isfinite(flow["mb_err"]))[0]
    row["mb_last"] = float(flow["mb"][last[-1]]) if last.size else float("nan")
    row["mb_last_err"] = float(flow["mb_err"][last[-1]]) if last.size else float("nan")
    keys = ("a_l", "err_a_l", "b_l", "err_b_l", "chi2dof_l", "a_t", "err_a_t", "b_t", "err_b_t", "chi2dof_t",
            "eps_l_R", "band_l", "band_scaled_l", "eps_t_R", "band_t", "band_scaled_t", "mb_R", "mb_R_err",
            "mb_R_err_scaled",
            "mb_asymptotic", "mb_asymptotic_err")
    if use.sum() < 2:
        row.update(dict.fromkeys(keys, float("nan")))
        row.update(trend="n/a", note="not enough reliable steps")
        return row
    x = flow["x"][use]
    pred, weights = {}, {}
    for a in ("l", "t"):
        y, sig = flow[f"eps_{a}"][use], flow[f"err_{a}"][use]
        fit = fit_log_flow(x, y, sig)
        eps_r = float(recursion_solution(fit["a"], fit["b"], r_over_l1, n0, eps23_1=0.0))
        c_r = _linear_weights(x, sig, [1.0, x_r])
        c_b = _linear_weights(x, sig, [0.0, 1.0])
        band = math.sqrt(float(np.sum(c_r**2 * sig**2)))
        chi2 = fit["chi2_dof"]
        row.update({f"a_{a}": fit["a"], f"err_a_{a}": fit["err_a"], f"b_{a}": fit["b"], f"err_b_{a}": fit["err_b"],
                    f"chi2dof_{a}": chi2, f"eps_{a}_R": eps_r, f"band_{a}": band,
                    f"band_scaled_{a}": band * math.sqrt(max(1.0, chi2)) if math.isfinite(chi2) else band})
        pred[a] = (eps_r, band**2, fit["b"], fit["err_b"] ** 2)
        weights[a] = (c_r, c_b)
    cov = flow["cov_lt"][use]
    cov = np.where(np.isfinite(cov), cov, 0.0)
    cov_r = float(np.sum(weights["l"][0] * weights["t"][0] * cov))
    cov_b = float(np.sum(weights["l"][1] * weights["t"][1] * cov))
    if pred["l"][0] > 0 and pred["t"][0] > 0:
        row["mb_R"], row["mb_R_err"] = _sqrt_ratio(pred["l"][0], pred["t"][0], pred["l"][1], pred["t"][1], cov_r)
    else:
        row["mb_R"], row["mb_R_err"] = float("nan"), float("nan")
    # the same error with each fit's band scaled by sqrt(max(1, χ²/dof)): the one the trend uses
    scale = [max(1.0, row[f"chi2dof_{a}"]) if math.isfinite(row[f"chi2dof_{a}"]) else 1.0 for a in ("l", "t")]
    row["mb_R_err_scaled"] = (_sqrt_ratio(pred["l"][0], pred["t"][0], pred["l"][1] * scale[0], pred["t"][1] * scale[1],
                                          cov_r * math.sqrt(scale[0] * scale[1]))[1]
                              if math.isfinite(row["mb_R"]) else float("nan"))
    row["mb_asymptotic"], row["mb_asymptotic_err"] = _sqrt_ratio(pred["l"][2], pred["t"][2], pred["l"][3],
                                                                 pred["t"][3], cov_b)
    row["trend"] = _trend(row["mb_R"], row["mb_R_err_scaled"], row["mb_last"], row["mb_last_err"], cl_over_ct)
    notes = [] if math.isfinite(row["mb_R"]) else ["extrapolated ε̇_l or ε̇_t ≤ 0: no MB(R)"]
    bad = [f"{a}: {row[f'chi2dof_{a}']:.3g}" for a in ("l", "t")
           if math.isfinite(row[f"chi2dof_{a}"]) and row[f"chi2dof_{a}"] > CHI2_REJECT]
    if bad:
        notes.append(f"the line a + b·x does not fit (χ²/dof {', '.join(bad)}): errors scaled, extrapolation "
                     "model-dependent")
    if pred["l"][2] < 0 or pred["t"][2] < 0:
        notes.append("negative slope b: ε̇ decreases with L")
    row["note"] = "; ".join(notes)
    return row


def _material(cl_over_ct: float, match_tol: float):
    mats = [(abs(m.cl_km_s / m.ct_km_s - cl_over_ct), m.material) for m in load_materials()]
    best = min(mats)
    return best[1] if best[0] <= match_tol else ""


# --------------------------------------------------------------------------------------------
# The reduction
# --------------------------------------------------------------------------------------------
def _step_rows(vid: int, label: str, f: dict) -> list:
    rows = []
    for i in range(f["x"].size):
        rows.append({"variant": vid, "setup": label, "replicates": f["replicates"], "step": f["steps"][i],
                     "log_n0_L_over_L1": float(f["x"][i]), "reliable": bool(f["reliable"][i]),
                     "n_effective": int(f["n_effective"][i]), "mb": float(f["mb"][i]),
                     "mb_err": float(f["mb_err"][i]), "eps_l": float(f["eps_l"][i]), "err_l": float(f["err_l"][i]),
                     "d_eps_l": float(f["d_l"][i]), "err_d_l": float(f["err_dl"][i]), "eps_t": float(f["eps_t"][i]),
                     "err_t": float(f["err_t"][i]), "d_eps_t": float(f["d_t"][i]), "err_d_t": float(f["err_dt"][i]),
                     "err_method_d": f["method"][i] if i else "",
                     "r_int_l": float(f["r_l"][i]), "err_r_int_l": float(f["err_rl"][i]),
                     "r_int_t": float(f["r_t"][i]), "err_r_int_t": float(f["err_rt"][i]),
                     "eps_int_l": float(f["eps_int_l"][i]), "eps_int_t": float(f["eps_int_t"][i]),
                     "mb_int": float(f["mb_int"][i]), "mb_int_err": float(f["mb_int_err"][i])})
    return rows


def _setup_label(group) -> str:
    t = group[0]
    return (f"cl/ct={cl_over_ct_of(t):.4g} g={config_value(t, 'model.coupling', float('nan'))} N0={n0_of(t)} "
            f"n_keep={config_value(t, 'rg.n_keep', '?')} samples={config_value(t, 'rg.samples', '?')} "
            f"pool={config_value(t, 'rg.pool_size', '?')} {config_value(t, 'rg.pool_strategy', '')} "
            f"{config_value(t, 'rg.truncation', 'lowest')}").strip()


def _plot(variants, flows, extraps, extraps_int, path) -> str:
    fig, axes = new_figure(ncols=2)
    ax_mb, ax_eps = axes[0, 0], axes[0, 1]
    for grp, f, ex, exi in zip(variants, flows, extraps, extraps_int):
        lab = _setup_label(grp)
        line = ax_mb.errorbar(f["x"], f["mb"], yerr=np.nan_to_num(f["mb_err"]), marker="o", capsize=3, label=lab)
        col = line[0].get_color()
        if np.any(np.isfinite(f["mb_int"])):
            ax_mb.errorbar(f["x"], f["mb_int"], yerr=np.nan_to_num(f["mb_int_err"]), marker="o", mfc="none", ls="--",
                           color=col, capsize=2)
        ax_mb.axhline(ex["cl_over_ct"], color="k", ls=":", lw=0.8)
        if math.isfinite(exi["mb_R"]):
            ax_mb.errorbar([exi["x_R"]], [exi["mb_R"]], yerr=[np.nan_to_num(exi["mb_R_err_scaled"])], marker="*",
                           ms=10, color=col, capsize=3)
        ax_eps.errorbar(f["x"], f["eps_l"], yerr=np.nan_to_num(f["err_l"]), marker="o", ls="none", color=col,
                        capsize=3, label=lab)
        if np.any(np.isfinite(f["eps_int_l"])):
            ax_eps.errorbar(f["x"], f["eps_int_l"], yerr=np.nan_to_num(f["err_int_l"]), marker="o", mfc="none",
                            ls="none", color=col, capsize=2)
        if math.isfinite(exi["a_l"]):
            xs = np.linspace(0.0, exi["x_R"], 50)
            ax_eps.plot(xs, exi["a_l"] + exi["b_l"] * xs, color=col, lw=0.8)
    ax_mb.set_xlabel("log_N0(L/L1)")
    ax_mb.set_ylabel("MB (filled: running; open: MB*)")
    ax_mb.set_title("MB(L); ★ MB(R) of the interaction route; dotted: c_l/c_t")
    ax_mb.legend(fontsize=6)
    ax_eps.set_xlabel("log_N0(L/L1)")
    if all(np.all(np.asarray(f[f"eps_{a}"])[np.isfinite(f[f"eps_{a}"])] > 0) for f in flows for a in ("l", "t")):
        ax_eps.set_yscale("log")
    ax_eps.set_ylabel("ε̇_l (units 2A²k²ω T*²/L1³)")
    ax_eps.set_title("ε̇_l: fixed band (filled), ε̇*_l (open), Eq. (4.2) fit")
    ax_eps.legend(fontsize=6)
    return save_figure(fig, path)


def run(files, outdir="analysis-out", match_tol=0.01, L1=DEFAULT_L1_M, R=DEFAULT_R_M, skip_steps=0,  # noqa: N803
        material_lengths=None, **_options) -> Report:
    """Write ``convergence.csv`` (per variant and step), ``convergence_extrapolation.csv``,
    ``convergence_n_keep.csv``, ``convergence_samples.csv`` and ``convergence.png`` under ``outdir``.

    ``L1``, ``R``: lengths in metres (defaults 50 Å, 1 mm); ``material_lengths``: ``{material: (L1, R)}``
    or a list of ``"NAME=L1,R"``; ``skip_steps``: leave the first steps out of the fit.
    """
    l1, r = check_lengths(L1, R)
    skip = _check_skip(skip_steps)
    if not isinstance(material_lengths, dict):
        material_lengths = parse_material_lengths(material_lengths)
    trajs = load_trajectories(files)
    variants = group_variants(trajs)
    flows = [variant_flow(g) for g in variants]
    rows, extraps = [], []
    for vid, (grp, f) in enumerate(zip(variants, flows)):
        label = _setup_label(grp)
        rows += _step_rows(vid, label, f)
        cl = cl_over_ct_of(grp[0])
        mat = _material(cl, match_tol)
        v_l1, v_r = material_lengths.get(mat, (l1, r))
        for route, flow_r in (("fixed band", f), ("interaction", interaction_flow(f))):
            ex = {"variant": vid, "route": route, "setup": label, "material": mat or "-", "L1_m": v_l1, "R_m": v_r}
            ex.update(extrapolate(flow_r, n0_of(grp[0]), v_r / v_l1, cl, skip))
            extraps.append(ex)
    conv = {}
    for kind in SERIES:
        conv[kind] = [row for sid, s in enumerate(convergence_series(trajs, kind)) for row in _series_rows(s, kind, sid)]
    csv_path = write_table(rows, os.path.join(outdir, "convergence.csv"))
    write_table(extraps, os.path.join(outdir, "convergence_extrapolation.csv"))
    for kind, crow in conv.items():
        write_table(crow, os.path.join(outdir, f"convergence_{kind}.csv"))
    png_path = _plot(variants, flows, [e for e in extraps if e["route"] == "fixed band"],
                     [e for e in extraps if e["route"] == "interaction"], os.path.join(outdir, "convergence.png"))
    text = format_table(rows, "Per-volume absorption ε̇ = −W/L³ per step (units 2A²k²ω·T*²/L1³), its increment "
                              "Δε̇ and MB(L); errors from independent units (NaN: unreliable step)")
    for kind, crow in conv.items():
        title = (f"Convergence in {kind}: z = (value − reference)/combined error; reference = largest "
                 f"{'n_keep' if kind == 'n_keep' else 'number of independent units'}")
        text += "\n\n" + (format_table(crow, title) if crow else
                          f"{title}\n(no series: no two variants differ only in {' / '.join(SERIES[kind])})")
    text += "\n\n" + format_table(
        extraps, f"Extrapolation of Eq. (4.2) to x_R = log_N0(R/L1); MB(R) = sqrt(ε̇_l(R)/ε̇_t(R)); "
                 f"mb_asymptotic = sqrt(b_l/b_t) (Eq. 4.5 of the fit); trend: MB(R) vs the last measured step, "
                 f"relative to c_l/c_t ({SIGNIFICANCE:g}σ)")
    return Report("convergence", rows, csv_path, png_path, text, {"extrapolation": extraps, **conv})


def add_options(parser) -> None:
    """The options of this reduction (also those of ``blocksim analyze``)."""
    parser.add_argument("--L1", dest="L1", type=float, default=DEFAULT_L1_M,
                        help="microscopic length L1 in metres (default 5e-9 = 50 Å)")
    parser.add_argument("--R", dest="R", type=float, default=DEFAULT_R_M,
                        help="experimental length R in metres (default 1e-3 = 1 mm)")
    parser.add_argument("--skip-steps", dest="skip_steps", type=int, default=0,
                        help="leave steps with index < N out of the Eq. (4.2) fit (default 0)")
    parser.add_argument("--material-lengths", dest="material_lengths", action="append", default=[],
                        metavar="NAME=L1,R", help="lengths (metres) for files matching a material of Sec. IV")


def _options(parser) -> None:
    add_options(parser)
    parser.add_argument("--match-tol", dest="match_tol", type=float, default=0.01,
                        help="c_l/c_t tolerance for matching a material (default 0.01)")


def main(argv=None) -> int:
    """``python analysis/convergence.py FILES... [-o OUTDIR] [--L1 M] [--R M] [--skip-steps N]``."""
    return script_main(run, "Per-step absorption increments, convergence in n_keep and samples, extrapolation to R",
                       argv, _options)
