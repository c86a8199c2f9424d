"""Per-step observables of the coarse-graining loop: ω grid, response arrays, band weights, MB ratios.

Units: ω, T in E*; amplitudes in T*; χ in T*²/E* per super block (V = 1 super block).
MB = sqrt(W_l/W_t) with W = ∫_band Im χ dω at the reference temperature (sharp lines), powder-averaged,
with a delete-one jackknife error over the super blocks (docs/config.md).
"""

from __future__ import annotations

import math

import numpy as np

from ..config import Config
from ..model.tensors import direction_strains

__all__ = [
    "AUTO_QUANTILES",
    "frequency_grid",
    "powder_lt",
    "direction_vectors",
    "band_weight_tensors",
    "jackknife_ratio",
    "pool_transitions",
    "response_arrays",
    "reference_weights",
    "mb_from_weights",
]

#: Auto grid: from AUTO_PAD_LO·(2% quantile of the lowest gaps) to AUTO_PAD_HI·(98% quantile of all
#: excitation energies from the ground state) of the step's super blocks.
AUTO_QUANTILES = (0.02, 0.98)
AUTO_PAD_LO, AUTO_PAD_HI = 0.5, 2.0

# Isotropic projectors on Mandel 6×6 matrices: J = bulk, K = deviatoric (tensors.isotropic_projection).
_J = np.zeros((6, 6))
_J[:3, :3] = 1.0 / 3.0
_K = np.eye(6) - _J


def frequency_grid(cfg: Config, lowest_gaps, excitations) -> tuple[np.ndarray, np.ndarray]:
    """Log-spaced grid ``(edges [n+1], centres [n])`` in units of E*; centres are geometric means.

    ``"auto"`` limits: ω_min = 0.5 × (2% quantile of ``lowest_gaps``), ω_max = 2 × (98% quantile of
    ``excitations``), both over the step's super blocks (non-positive values ignored).
    """
    obs = cfg.observables
    gaps = np.asarray(lowest_gaps, dtype=float)
    exc = np.asarray(excitations, dtype=float)
    gaps, exc = gaps[gaps > 0], exc[exc > 0]
    lo = obs.omega_min
    hi = obs.omega_max
    if lo == "auto":
        lo = AUTO_PAD_LO * float(np.quantile(gaps, AUTO_QUANTILES[0])) if gaps.size else 1e-3
    if hi == "auto":
        hi = AUTO_PAD_HI * float(np.quantile(exc, AUTO_QUANTILES[1])) if exc.size else 1.0
    if not hi > lo:
        hi = 10.0 * lo
    edges = np.geomspace(lo, hi, obs.omega_points + 1)
    return edges, np.sqrt(edges[1:] * edges[:-1])


def powder_lt(tensor):
    """Powder-averaged (χ_l, χ_t) of Mandel tensors ``[..., 6, 6]``.

    The orientation average of e_l·C·e_l and e_t·C·e_t equals the isotropic projection of C
    (:func:`tensors.isotropic_projection`): a = Σ J∘C, b = Σ K∘C / 5, χ_t = b/2, χ_l = a/3 + 2b/3.
    """
    c = np.asarray(tensor, dtype=float)
    a = np.einsum("...ab,ab->...", c, _J)
    b = np.einsum("...ab,ab->...", c, _K) / 5.0
    return a / 3.0 + 2.0 * b / 3.0, 0.5 * b


def direction_vectors(directions) -> tuple[np.ndarray, np.ndarray]:
    """Mandel strains ``(e_l [n_dir, 6], e_t [n_dir, 6])`` for direction strings 'q' or 'q:p'."""
    from ..config import parse_direction

    el, et = [], []
    for d in directions:
        q, p = parse_direction(d)
        a, b = direction_strains(np.array(q, float), None if p is None else np.array(p, float))
        el.append(a)
        et.append(b)
    return np.array(el).reshape(-1, 6), np.array(et).reshape(-1, 6)


def band_weight_tensors(omega, amp, population, temperature, segments, n_segments, band):
    """Per-segment ``W_ab = −π Σ_k p_k (1 − e^{−ω_k/T}) amp_ka amp_kb`` over ω_k ∈ [lo, hi) → ``[n_seg, 6, 6]``.

    omega [M] (E*), amp [M, 6] (T*), population [M] at temperature T (E*), segments [M] int (which
    super block or pool block each transition belongs to). This is ∫_band Im χ_ab dω with sharp lines
    (Eq. 2.11, V = 1), negative on the diagonal. Summation order is fixed (bincount), so the result
    does not depend on threads.
    """
    omega = np.asarray(omega, dtype=float)
    lo, hi = band
    sel = (omega >= lo) & (omega < hi)
    w = -np.pi * population[sel] * (-np.expm1(-omega[sel] / temperature))
    a = amp[sel]
    seg = np.asarray(segments)[sel]
    out = np.zeros((n_segments, 6, 6))
    for i in range(6):
        for j in range(i, 6):
            col = np.bincount(seg, weights=w * a[:, i] * a[:, j], minlength=n_segments)
            out[:, i, j] = col
            out[:, j, i] = col
    return out


def jackknife_ratio(w_l, w_t) -> tuple[float, float]:
    """``(sqrt(Σ w_l / Σ w_t), delete-one jackknife standard error)`` over the samples.

    err² = (n−1)/n · Σ_i (R_(i) − R̄)², R_(i) the ratio without sample i. nan error for n < 2.
    """
    w_l = np.asarray(w_l, dtype=float)
    w_t = np.asarray(w_t, dtype=float)
    n = w_l.size
    sl, st = w_l.sum(), w_t.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = math.sqrt(sl / st) if st != 0 and sl / st >= 0 else float("nan")
        if n < 2:
            return ratio, float("nan")
        loo = np.sqrt((sl - w_l) / (st - w_t))
    err = math.sqrt((n - 1) / n * float(np.sum((loo - loo.mean()) ** 2)))
    return ratio, err


def pool_transitions(energies, stress, temperature):
    """All transitions m → n (m ≠ n) of every pool block at one temperature (uncoupled blocks).

    Returns ``(omega [P·n(n−1)], amp [.., 6], population [..], segments [..])`` with Boltzmann
    populations of each block (the vectorized form of :func:`response.transitions_from_levels`).
    """
    e = np.asarray(energies, dtype=float)
    s = np.asarray(stress, dtype=float)
    p_count, n = e.shape
    boltz = np.exp(-(e - e[:, :1]) / temperature)
    boltz /= boltz.sum(axis=1, keepdims=True)
    m_idx, n_idx = np.nonzero(~np.eye(n, dtype=bool))
    omega = (e[:, n_idx] - e[:, m_idx]).reshape(-1)
    amp = np.moveaxis(s[:, :, m_idx, n_idx], 1, 2).reshape(-1, 6)
    pop = boltz[:, m_idx].reshape(-1)
    seg = np.repeat(np.arange(p_count), m_idx.size)
    return omega, amp, pop, seg


def response_arrays(cfg, trans_list, edges, centres):
    """Powder and directional Im χ, Re χ on the grid, mean per super block."""
    from ..response import Transitions, chi_tensor

    obs = cfg.observables
    temps = np.asarray(obs.temperatures, dtype=float)
    trans = Transitions(
        omega=np.concatenate([t.omega for t in trans_list]),
        amp=np.concatenate([t.amp for t in trans_list]),
        population=np.concatenate([t.population for t in trans_list], axis=1),
        temperatures=temps,
        volume=float(len(trans_list)),
    )
    if obs.line == "bins":
        grid, width = edges, None
    else:
        grid, width = centres, obs.width * edges[0]
    im = chi_tensor(trans, grid, quantity="im_chi", line=obs.line, width=width)
    re = chi_tensor(trans, grid, quantity="re_chi", line=obs.line, width=width)
    e_l, e_t = direction_vectors(obs.directions)
    res = {}
    res["im_chi_l"], res["im_chi_t"] = powder_lt(im)
    res["re_chi_l"], res["re_chi_t"] = powder_lt(re)
    res["im_chi_l_dir"] = np.einsum("da,twab,db->dtw", e_l, im, e_l)
    res["im_chi_t_dir"] = np.einsum("da,twab,db->dtw", e_t, im, e_t)
    res["re_chi_l_dir"] = np.einsum("da,twab,db->dtw", e_l, re, e_l)
    res["re_chi_t_dir"] = np.einsum("da,twab,db->dtw", e_t, re, e_t)
    return res


def reference_weights(cfg, trans_list, band):
    """Per-super-block band weight tensors ``[P_out, 6, 6]`` at the reference temperature."""
    t_index = list(cfg.observables.temperatures).index(cfg.reference_temperature)
    omega = np.concatenate([t.omega for t in trans_list])
    amp = np.concatenate([t.amp for t in trans_list])
    pop = np.concatenate([t.population[t_index] for t in trans_list])
    seg = np.repeat(np.arange(len(trans_list)), [t.size for t in trans_list])
    return band_weight_tensors(omega, amp, pop, cfg.reference_temperature, seg, len(trans_list), band)


def mb_from_weights(w, e_l, e_t):
    """Powder and per-direction MB (with jackknife errors) from band weight tensors ``[P, 6, 6]``."""
    wl, wt = powder_lt(w)
    mb, err = jackknife_ratio(wl, wt)
    dl = np.einsum("da,pab,db->dp", e_l, w, e_l)
    dt = np.einsum("da,pab,db->dp", e_t, w, e_t)
    dirs = [jackknife_ratio(dl[d], dt[d]) for d in range(e_l.shape[0])]
    return wl, wt, mb, err, np.array([x[0] for x in dirs]), np.array([x[1] for x in dirs])
