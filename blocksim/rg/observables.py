"""Per-step observables of the coarse-graining loop: ω grid, response arrays, band weights, MB ratios.

Units: ω, T in E*; amplitudes in T*; χ in T*²/E* per super block (V = 1 super block).
MB = sqrt(W_l/W_t) with W = ∫_band Im χ dω at the reference temperature (sharp lines), powder-averaged,
with a delete-one jackknife error over the super blocks (docs/config.md).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..model.tensors import powder_lt
from ..response import Transitions, boltzmann, chi_tensors

__all__ = [
    "AUTO_QUANTILES",
    "frequency_grid",
    "band_weight_tensors",
    "jackknife_ratio",
    "response_arrays",
    "reference_weights",
    "mb_from_weights",
    "group_sums",
    "reliability",
    "response_from_tensors",
]

#: Auto grid: from AUTO_PAD_LO·(2% quantile of the lowest gaps) to AUTO_PAD_HI·(98% quantile of all
#: excitation energies from the ground state) of the step's super blocks.
AUTO_QUANTILES = (0.02, 0.98)
AUTO_PAD_LO, AUTO_PAD_HI = 0.5, 2.0

def frequency_grid(lowest_gaps, excitations, n_points: int, omega_min="auto", omega_max="auto"):
    """Log-spaced frequency grid of one RG step.

    Parameters
    ----------
    lowest_gaps : array_like [P_out]
        Lowest excitation energy of each super block of the step, units of E*.
    excitations : array_like
        All excitation energies (from the ground state) of the step's super blocks, units of E*.
    n_points : int
        Number of grid points n_ω (bins for ``line = "bins"``).
    omega_min, omega_max : float or "auto"
        Grid limits in units of E*. ``"auto"``: ω_min = 0.5 × (2% quantile of ``lowest_gaps``),
        ω_max = 2 × (98% quantile of ``excitations``) (non-positive values ignored).

    Returns
    -------
    edges : ndarray [n_ω + 1]
        Log-spaced bin edges, units of E*.
    centres : ndarray [n_ω]
        Geometric means of neighbouring edges, units of E*.
    """
    gaps = np.asarray(lowest_gaps, dtype=float)
    exc = np.asarray(excitations, dtype=float)
    gaps, exc = gaps[gaps > 0], exc[exc > 0]
    lo = omega_min
    hi = omega_max
    if lo == "auto":
        lo = AUTO_PAD_LO * float(np.quantile(gaps, AUTO_QUANTILES[0])) if gaps.size else 1e-3
    if hi == "auto":
        hi = AUTO_PAD_HI * float(np.quantile(exc, AUTO_QUANTILES[1])) if exc.size else 1.0
    if not hi > lo:
        hi = 10.0 * lo
    edges = np.geomspace(lo, hi, n_points + 1)
    return edges, np.sqrt(edges[1:] * edges[:-1])


@numba.njit(cache=True, nogil=True)
def _segment_products(seg, w, a, out):
    """``out[seg[k], i, j] += (w_k·a_ki)·a_kj`` for i ≤ j, k ascending, mirrored to j < i at the end.

    The same products in the same order as one ``np.bincount(seg, weights=w·a_i·a_j)`` per (i, j), so
    the result is bit for bit that of the 21 bincounts, in one pass over the transitions.
    """
    for k in range(seg.shape[0]):
        s = seg[k]
        for i in range(6):
            wi = w[k] * a[k, i]
            for j in range(i, 6):
                out[s, i, j] += wi * a[k, j]
    for s in range(out.shape[0]):
        for i in range(6):
            for j in range(i + 1, 6):
                out[s, j, i] = out[s, i, j]


def band_weight_tensors(omega, amp, population, temperature, segments, n_segments, band):
    """Per-segment ``W_ab = −π Σ_k p_k (1 − e^{−ω_k/T}) amp_ka amp_kb`` over ω_k ∈ [lo, hi) → ``[n_seg, 6, 6]``.

    omega [M] (E*), amp [M, 6] (T*), population [M] at temperature T (E*), segments [M] int (which
    super block or pool block each transition belongs to). This is ∫_band Im χ_ab dω with sharp lines
    (Eq. 2.11, V = 1), negative on the diagonal. Summation order is fixed (ascending transitions per
    segment), so the result does not depend on threads.
    """
    w, a, seg = _band_lines(omega, amp, population, temperature, segments, band)
    out = np.zeros((n_segments, 6, 6))
    _segment_products(np.ascontiguousarray(seg, dtype=np.int64), np.ascontiguousarray(w, dtype=float),
                      np.ascontiguousarray(a, dtype=float), out)
    return out


def _band_lines(omega, amp, population, temperature, segments, band):
    """The lines inside the band: weights −π p (1 − e^{−ω/T}), amplitudes and segments."""
    omega = np.asarray(omega, dtype=float)
    lo, hi = band
    sel = (omega >= lo) & (omega < hi)
    w = _line_weights(population[sel], omega[sel], temperature)
    return w, amp[sel], np.asarray(segments)[sel]


def _line_weights(population, omega, temperature):
    """−π p (1 − e^{−ω/T}) of each line (the sharp-line ∫ Im χ weight of Eq. 2.11)."""
    return -np.pi * population * (-np.expm1(-omega / temperature))


def level_band_weights(energies, stress, temperature, band) -> np.ndarray:
    """:func:`band_weight_tensors` of each block's own transitions ``[P, 6, 6]``, without building them.

    The same numbers as ``band_weight_tensors`` of :func:`~blocksim.response.transitions_from_levels`
    (``energies [P, n]``, ``stress [P, 6, n, n]``, one temperature, segment = block): the lines in the band
    are found block by block in the row-major (m, n) order of those transitions, their weights are the
    weights of :func:`_line_weights`, and the products go through :func:`_segment_products`
    (tests/test_observables.py). The tree's pool weights of every step.
    """
    e = np.ascontiguousarray(energies, dtype=float)
    st = np.ascontiguousarray(stress, dtype=float)
    p = boltzmann(e, [temperature])[0]
    lo, hi = band
    most = e.shape[0] * e.shape[1] * (e.shape[1] - 1)  # every ordered pair of every block
    seg = np.empty(most, dtype=np.int64)
    omega = np.empty(most)
    pop = np.empty(most)
    amp = np.empty((most, 6))
    k = _collect_band_pairs(e, st, p, float(lo), float(hi), seg, omega, pop, amp)
    w = _line_weights(pop[:k], omega[:k], temperature)
    out = np.zeros((e.shape[0], 6, 6))
    _segment_products(seg[:k], w, np.ascontiguousarray(amp[:k]), out)
    return out


@numba.njit(cache=True, nogil=True)
def _collect_band_pairs(e, st, p, lo, hi, seg, omega, pop, amp):
    """The pairs m ≠ n of each block with E_n − E_m in [lo, hi), in row-major (m, n) order; returns their number."""
    k = 0
    for b in range(e.shape[0]):
        for m in range(e.shape[1]):
            for n in range(e.shape[1]):
                if m != n:
                    w = e[b, n] - e[b, m]
                    if w >= lo and w < hi:
                        seg[k] = b
                        omega[k] = w
                        pop[k] = p[b, m]
                        for a in range(6):
                            amp[k, a] = st[b, a, m, n]
                        k += 1
    return k


def _band_weight_tensors_reference(omega, amp, population, temperature, segments, n_segments, band):
    """Plain NumPy reference of :func:`band_weight_tensors`: one ``np.bincount`` per component."""
    w, a, seg = _band_lines(omega, amp, population, temperature, segments, band)
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


def _joined(trans_list):
    """The transitions of all super blocks of a step as one list, V = number of super blocks."""
    return Transitions(
        omega=np.concatenate([t.omega for t in trans_list]),
        amp=np.concatenate([t.amp for t in trans_list]),
        population=np.concatenate([t.population for t in trans_list], axis=1),
        temperatures=trans_list[0].temperatures,
        volume=float(len(trans_list)),
    )


def response_arrays(trans_list, edges, centres, e_l, e_t, *, line: str, width=None) -> dict:
    """Powder and directional Im χ, Re χ (Eq. 2.11) of a step's super blocks, mean per super block.

    Parameters
    ----------
    trans_list : list of Transitions
        One :class:`~blocksim.response.Transitions` per super block (same temperatures [n_T]).
    edges, centres : ndarray [n_ω + 1], [n_ω]
        The grid of :func:`frequency_grid`, units of E*.
    e_l, e_t : ndarray [n_dir, 6]
        Mandel strains of the directions (:func:`direction_vectors`).
    line : str
        ``"bins"`` (binned spectral weights over ``edges``), ``"lorentzian"`` or ``"gaussian"``
        (evaluated at ``centres``).
    width : float, optional
        Line width in units of E* (not used for ``"bins"``).

    Returns
    -------
    dict
        ``im_chi_l``, ``im_chi_t``, ``re_chi_l``, ``re_chi_t`` [n_T, n_ω] (powder average,
        :func:`~blocksim.model.tensors.powder_lt`) and the same with suffix ``_dir``
        [n_dir, n_T, n_ω], in units of T*²/E* per super block; Im χ < 0 for ω > 0.
    """
    trans = _joined(trans_list)
    grid = edges if line == "bins" else centres
    im, re = chi_tensors(trans, grid, ("im_chi", "re_chi"), line=line, width=width)
    return response_from_tensors(im, re, e_l, e_t)


def response_from_tensors(im, re, e_l, e_t) -> dict:
    """The response arrays of :func:`response_arrays` from the Mandel tensors Im χ_ab, Re χ_ab ``[n_T, n_ω, 6, 6]``.

    ``e_l, e_t [n_dir, 6]``: Mandel strains of the directions. Units as the tensors (T*²/E* per super block).
    """
    res = {}
    res["im_chi_l"], res["im_chi_t"] = powder_lt(im)
    res["re_chi_l"], res["re_chi_t"] = powder_lt(re)
    res["im_chi_l_dir"] = np.einsum("da,twab,db->dtw", e_l, im, e_l)
    res["im_chi_t_dir"] = np.einsum("da,twab,db->dtw", e_t, im, e_t)
    res["re_chi_l_dir"] = np.einsum("da,twab,db->dtw", e_l, re, e_l)
    res["re_chi_t_dir"] = np.einsum("da,twab,db->dtw", e_t, re, e_t)
    return res


def reference_weights(trans_list, t_index: int, band) -> np.ndarray:
    """Per-super-block band weight tensors ``[P_out, 6, 6]`` (T*²): ∫_band of Eq. (2.11) at temperature ``t_index``.

    ``trans_list`` holds one :class:`~blocksim.response.Transitions` per super block; the
    reference temperature is ``trans_list[0].temperatures[t_index]`` (E*); ``band`` = (ω_lo, ω_hi)
    in E*. See :func:`band_weight_tensors`.
    """
    temperature = float(trans_list[0].temperatures[t_index])
    omega = np.concatenate([t.omega for t in trans_list])
    amp = np.concatenate([t.amp for t in trans_list])
    pop = np.concatenate([t.population[t_index] for t in trans_list])
    seg = np.repeat(np.arange(len(trans_list)), [t.size for t in trans_list])
    return band_weight_tensors(omega, amp, pop, temperature, seg, len(trans_list), band)


def mb_from_weights(w, e_l, e_t):
    """Powder and per-direction MB with jackknife errors from band weight tensors.

    Parameters
    ----------
    w : ndarray [P, 6, 6]
        Band weight tensors W_ab (T*²), one per super block (:func:`reference_weights`).
    e_l, e_t : ndarray [n_dir, 6]
        Mandel strains of the directions.

    Returns
    -------
    tuple
        ``(w_l [P], w_t [P], mb, mb_err, mb_dir [n_dir], mb_dir_err [n_dir])``: the powder weights
        (:func:`~blocksim.model.tensors.powder_lt`), MB = sqrt(ΣW_l/ΣW_t) and its delete-one jackknife
        error (:func:`jackknife_ratio`), and the same along each direction.
    """
    wl, wt = powder_lt(w)
    mb, err = jackknife_ratio(wl, wt)
    dl = np.einsum("da,pab,db->dp", e_l, w, e_l)
    dt = np.einsum("da,pab,db->dp", e_t, w, e_t)
    dirs = [jackknife_ratio(dl[d], dt[d]) for d in range(e_l.shape[0])]
    return wl, wt, mb, err, np.array([x[0] for x in dirs]), np.array([x[1] for x in dirs])


def group_sums(w, groups, n_groups: int) -> np.ndarray:
    """Sum per-super-block weight tensors ``w [P, 6, 6]`` over independent units: ``[n_groups, 6, 6]``.

    ``groups [P]`` (int) names the unit of each super block (a replicate pool, a subtree). The sum
    runs in index order (``np.add.at``), so the result does not depend on threads or workers.
    """
    out = np.zeros((int(n_groups),) + np.shape(w)[1:])
    add_rows_at(out, np.asarray(groups, dtype=np.int64), np.asarray(w, dtype=float))
    return out


def add_rows_at(out, rows, w) -> None:
    """``np.add.at(out, rows, w)`` for rows of any shape: out[rows[i]] += w[i] for i in order (same sums)."""
    n = len(rows)
    if n == 0:
        return
    if np.any(rows < 0) or np.any(rows >= out.shape[0]):
        raise IndexError(f"rows: must lie in 0 … {out.shape[0] - 1}")
    flat = out.reshape(out.shape[0], -1)
    _add_rows_at(flat, rows, np.ascontiguousarray(w, dtype=float).reshape(n, -1))
    if not np.shares_memory(flat, out):
        out[...] = flat.reshape(out.shape)


@numba.njit(cache=True, nogil=True)
def _add_rows_at(out, rows, w):
    for i in range(rows.shape[0]):
        r = rows[i]
        for c in range(w.shape[1]):
            out[r, c] += w[i, c]


def reliability(n_effective: int, min_effective: int, errors: dict) -> tuple[bool, dict]:
    """``(reliable, errors)``: below ``min_effective`` independent samples every error becomes NaN.

    ``errors`` maps names to float or array standard errors; they are returned unchanged when
    ``n_effective ≥ min_effective`` and as NaN (never 0) otherwise.
    """
    if n_effective >= min_effective:
        return True, errors
    return False, {k: (np.full(np.shape(v), np.nan) if np.ndim(v) else float("nan")) for k, v in errors.items()}
