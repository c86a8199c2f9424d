"""Stress–stress response of blocks and super blocks: Im χ̃, Im χ, Re χ, absorption rate, KK.

Every spectrum enters through :class:`Transitions` (DESIGN "Array contracts"): transition k from an
initial state |m⟩ to a final state |n⟩ has frequency ``ω_k = E_n − E_m``, Mandel amplitudes
``amp[k, a] = ⟨m|T_a|n⟩`` and initial-state population ``p_k(T) = p_m(T)``. Units: ħ = k_B = 1,
ω and T in units of E*, stress in units of T*, volume V = L³ in units of the current block volume,
so χ is in units of T*²/(E*·V).

Definitions (Eq. 2.9–2.11 of [ZL]; strains e_a, e_b are Mandel 6-vectors; u_k = e_a·amp_k,
v_k = e_b·amp_k)

* ``Im χ̃_ab(T, ω) = −(π/V) Σ_k p_k u_k v_k δ(ω − ω_k)``  (Eq. 2.11) — **negative** for ω > 0 when a = b.
* ``χ_ab(ω) = (1/V) Σ_k p_k u_k v_k [F(ω − ω_k) − F(ω + ω_k)]`` with F(x) = 1/(x + i0⁺) for sharp
  lines. Its imaginary part is Eq. (2.9),
  ``Im χ = −(π/V) Σ_k p_k u_k v_k [δ(ω − ω_k) − δ(ω + ω_k)] = Im χ̃(ω) − Im χ̃(−ω)``, which equals
  ``(1 − e^{−βω}) Im χ̃(ω)`` (Eq. 2.11) because the reverse transition has population p_k e^{−βω_k}.
  Its real part is ``Re χ = (1/V) Σ_k p_k u_k v_k · 2ω_k/(ω² − ω_k²)`` (principal value).

Line shapes (``line=``; x = ω − ω_k; F(x) = R(x) − iπ g(x) is analytic in the upper half plane, so
Re and Im are an exact Kramers–Kronig pair, ``Re χ(ω) = (1/π) P∫ Im χ(ω')/(ω' − ω) dω'``)

* ``"lorentzian"``, width η = half width at half maximum: g = (η/π)/(x² + η²), R = x/(x² + η²)
  (F = 1/(x + iη)).
* ``"gaussian"``, width σ = standard deviation: g = exp(−x²/2σ²)/(σ√(2π)),
  R = (√2/σ)·D(x/(√2σ)) with D the Dawson function (the Hilbert transform of the Gaussian).
* ``"bins"``: ``omega`` are bin EDGES (ascending, ≥ 2). Im parts are the spectral weight in each
  bin [e_i, e_{i+1}) divided by its width, i.e. each line becomes a box over its bin. Re χ is the
  principal-value Hilbert transform of that box spectral density at the bin centres ω̄_j:
  R = (1/Δ_i) ln|(ω̄_j − e_i)/(ω̄_j − e_{i+1})| for a line in bin i (0 in its own bin), and the
  sharp-line R = 1/(ω̄_j − ω_k) for a line outside the grid. It is finite for every line position
  (also a line exactly on a bin edge) and is the exact KK partner of the binned Im part at the
  centres. Results have n_ω = len(edges) − 1.
  The thermal factor (1 − e^{−βω}) of :func:`im_chi` uses the bin centres.

Im χ with broadened lines: ``form="detailed_balance"`` (default) is Eq. (2.11) literally,
(1 − e^{−βω}) Im χ̃(ω) for ω ≥ 0, extended as an odd function to ω < 0 (numerically stable at T = 0);
``form="spectral"`` is Im χ̃(ω) − Im χ̃(−ω), the exact KK partner of :func:`re_chi`. The two agree
for sharp lines and differ by O(βη) inside a line of width η.

Diagonal elements (m = n) are not transitions: the quasi-elastic (relaxation) part of the response
they produce is outside the resonant part of Eq. (2.11) and is not included. Degenerate pairs
m ≠ n with E_m = E_n are included (ω_k = 0; they drop out of χ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numba
import numpy as np
from scipy.special import dawsn

from ..choices import LINES
from ..errors import InputError
from ..model.tensors import direction_strains, parse_direction, powder_lt

__all__ = [
    "LINES",
    "Transitions",
    "boltzmann",
    "thermal_factor",
    "transitions_from_levels",
    "line_profiles",
    "im_chi_tilde",
    "im_chi",
    "re_chi",
    "chi_tensor",
    "chi_tensors",
    "kramers_kronig_re",
    "powder_directions",
    "chi_components",
    "absorption_rate",
    "mb_ratio",
]

_FORMS = ("detailed_balance", "spectral")
_QUANTITIES = ("im_chi", "im_chi_tilde", "re_chi")
#: Transitions processed per chunk when building [M, n_ω] line matrices (memory bound).
_CHUNK = 4096
#: Transitions per chunk of the binned sums (:func:`_binned_sum`, :func:`_binned_pair`): their weight columns
#: and Re χ rows ([256, 63] and [256, 48]) stay in the L2 cache between the numba pass and the GEMM
#: (15 % faster than 4096 on a 2-core EPYC; docs/performance.md).
_BINS_CHUNK = 256


# --------------------------------------------------------------------------------------------
# Transitions
# --------------------------------------------------------------------------------------------
@dataclass
class Transitions:
    """A list of M transitions m → n of a closed system: the terms of the spectral sum of Eq. (2.11) of [ZL].

    The array contract is DESIGN "Array contracts".

    Fields
    ------
    omega : float64 [M]
        ω_k = E_final − E_initial, units of E*.
    amp : float64 [M, 6]
        Mandel components ⟨initial|T_a|final⟩, units of T*.
    population : float64 [n_T, M]
        Probability of the initial state at each temperature.
    temperatures : float64 [n_T]
        Temperatures, units of E* (k_B = 1).
    volume : float
        V = L³ in units of the current block volume (default 1).
    """

    omega: np.ndarray
    amp: np.ndarray
    population: np.ndarray
    temperatures: np.ndarray
    volume: float = 1.0

    def __post_init__(self):
        self.omega = np.asarray(self.omega, dtype=float).reshape(-1)
        self.temperatures = np.atleast_1d(np.asarray(self.temperatures, dtype=float))
        m, n_t = self.omega.shape[0], self.temperatures.shape[0]
        self.amp = np.asarray(self.amp, dtype=float)
        self.population = np.asarray(self.population, dtype=float)
        if self.amp.shape != (m, 6):
            raise InputError(f"amp shape = {self.amp.shape}: must be [M, 6] = [{m}, 6]")
        if self.population.shape != (n_t, m):
            raise InputError(f"population shape = {self.population.shape}: must be [n_T, M] = [{n_t}, {m}]")
        self.volume = float(self.volume)
        if not (np.isfinite(self.volume) and self.volume > 0):
            raise InputError(f"volume = {self.volume!r}: must be a finite number > 0")

    @property
    def size(self) -> int:
        """Number of transitions M."""
        return int(self.omega.shape[0])

    def concat(self, others: Iterable["Transitions"]) -> "Transitions":
        """Join transition lists of the same system (same temperatures and volume) into one."""
        if isinstance(others, Transitions):
            others = [others]
        parts = [self, *others]
        for other in parts[1:]:
            if other.temperatures.shape != self.temperatures.shape or not np.allclose(
                other.temperatures, self.temperatures, rtol=1e-12, atol=0.0
            ):
                raise InputError(
                    f"temperatures = {other.temperatures.tolist()}: must equal {self.temperatures.tolist()} to concat"
                )
            if not np.isclose(other.volume, self.volume, rtol=1e-12, atol=0.0):
                raise InputError(f"volume = {other.volume!r}: must equal {self.volume!r} to concat")
        return Transitions(
            omega=np.concatenate([p.omega for p in parts]),
            amp=np.concatenate([p.amp for p in parts], axis=0),
            population=np.concatenate([p.population for p in parts], axis=1),
            temperatures=self.temperatures.copy(),
            volume=self.volume,
        )


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
def _temperatures(temperatures) -> np.ndarray:
    t = np.atleast_1d(np.asarray(temperatures, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise InputError(f"temperatures = {np.asarray(temperatures).tolist()}: must be a non-empty 1-D list")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InputError(f"temperatures = {t.tolist()}: must be finite numbers ≥ 0 (units of E*)")
    return t


def _omega_grid(omega, line: str) -> np.ndarray:
    w = np.atleast_1d(np.asarray(omega, dtype=float))
    if w.ndim != 1 or w.size == 0:
        raise InputError(f"omega = {np.asarray(omega).tolist()}: must be a non-empty 1-D grid")
    if not np.all(np.isfinite(w)):
        raise InputError(f"omega = {w.tolist()}: must be finite numbers (units of E*)")
    if line == "bins" and (w.size < 2 or np.any(np.diff(w) <= 0)):
        raise InputError(f"omega = {w.tolist()}: for line='bins' must be ≥ 2 strictly increasing bin edges")
    return w


def _line_args(line: str, width) -> float:
    if line not in LINES:
        from ..errors import suggest

        raise InputError(f"line = {line!r}: must be one of {', '.join(LINES)}" + suggest(str(line), LINES))
    if line == "bins":
        return 0.0
    try:
        eta = float(width)
    except (TypeError, ValueError):
        raise InputError(f"width = {width!r}: must be a finite number > 0 for line={line!r}") from None
    if not (np.isfinite(eta) and eta > 0):
        raise InputError(f"width = {width!r}: must be a finite number > 0 for line={line!r}")
    return eta


def _strain(name: str, e) -> np.ndarray:
    e = np.asarray(e, dtype=float)
    if e.shape != (6,) or not np.all(np.isfinite(e)):
        raise InputError(f"{name} = {e.tolist()}: must be a finite Mandel 6-vector")
    return e


def _check_transitions(trans) -> Transitions:
    if not isinstance(trans, Transitions):
        raise InputError(f"trans = {type(trans).__name__}: must be a blocksim.response.Transitions")
    return trans


# --------------------------------------------------------------------------------------------
# Populations
# --------------------------------------------------------------------------------------------
def boltzmann(energies, temperatures) -> np.ndarray:
    """Boltzmann probabilities ``p[t, ..., m] = e^{−E_m/T_t}/Z`` of Eq. (2.11) of [ZL] (the one implementation).

    Parameters
    ----------
    energies : array_like [n] or [P, n]
        Levels of one system, or of P systems (each normalized on its own), units of E*.
    temperatures : array_like [n_T]
        Temperatures ≥ 0, units of E* (k_B = 1).

    Returns
    -------
    ndarray [n_T, n] or [n_T, P, n]
        T = 0 gives the ground-state projector; a degenerate ground state (levels within
        1e-12·max(1, max|E|) of the lowest) shares the weight equally.

    Raises
    ------
    InputError
        Empty or non-finite energies, negative or non-finite temperatures.
    """
    e = np.asarray(energies, dtype=float)
    if e.ndim not in (1, 2) or e.size == 0 or not np.all(np.isfinite(e)):
        raise InputError(f"energies = {e.tolist()}: must be a non-empty 1-D (or [P, n]) list of finite numbers")
    t = _temperatures(temperatures)
    de = e - e.min(axis=-1, keepdims=True)
    tol = 1e-12 * np.maximum(1.0, np.max(np.abs(e), axis=-1, keepdims=True))
    p = np.empty((t.size,) + e.shape)
    for i, temp in enumerate(t):
        w = (de <= tol).astype(float) if temp == 0.0 else np.exp(-de / temp)
        p[i] = w / w.sum(axis=-1, keepdims=True)
    return p


def thermal_factor(omega, temperatures) -> np.ndarray:
    """The factor ``1 − e^{−βω}`` of Im χ = (1 − e^{−βω}) Im χ̃ (Eq. 2.11 of [ZL]), ``[n_T, n_ω]``, for ω ≥ 0, odd-extended to ω < 0 as −(1 − e^{−β|ω|}).

    The odd extension makes ``thermal_factor·Im χ̃`` odd in ω (exact for sharp lines) and avoids
    overflow at T → 0. At T = 0 the factor is sign(ω) (1 for ω > 0, 0 at ω = 0).
    """
    w = np.atleast_1d(np.asarray(omega, dtype=float))
    t = _temperatures(temperatures)
    aw = np.abs(w)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(t[:, None] > 0, aw / np.where(t[:, None] > 0, t[:, None], 1.0), np.inf)
    f = -np.expm1(-x)
    f = np.where(aw == 0, 0.0, f)
    return np.sign(w)[None, :] * f


def transitions_from_levels(energies, stress, temperatures, volume: float = 1.0) -> Transitions:
    """All ordered transitions m → n (m ≠ n) of closed systems with Boltzmann populations (Eq. 2.11).

    The one implementation of "transitions from levels" in blocksim (single blocks, pools, the
    exact solver's eigenstates).

    Parameters
    ----------
    energies : array_like [n] or [P, n]
        Levels of one system or of P systems, units of E*.
    stress : array_like [6, n, n] or [P, 6, n, n]
        Mandel components of the stress in the energy eigenbasis, units of T*.
    temperatures : array_like [n_T]
        Units of E*.
    volume : float
        V in units of the current block volume.

    Returns
    -------
    Transitions
        Transition k = (m, n) has ω_k = E_n − E_m, amp[k] = stress[:, m, n], population[:, k] =
        p_m(T) (:func:`boltzmann`, each system normalized on its own). The M = n(n − 1) transitions
        of a system are in row-major (m, n) order; for P systems, system by system (M = P·n(n − 1)).
        Diagonal elements are excluded (see module docstring).
    """
    e = np.asarray(energies, dtype=float)
    s = np.asarray(stress, dtype=float)
    batch = e.ndim == 2
    n = e.shape[-1] if e.ndim in (1, 2) else 0
    if e.ndim not in (1, 2) or n < 2:
        raise InputError(f"n = {e.size if e.ndim == 1 else e.shape}: must be an integer ≥ 2 (energies [n])")
    want = (e.shape[0], 6, n, n) if batch else (6, n, n)
    if s.shape != want:
        raise InputError(f"stress shape = {s.shape}: must be {list(want)} to match energies {list(e.shape)}")
    if not np.all(np.isfinite(s)):
        raise InputError("stress: must contain only finite numbers")
    p = boltzmann(e, temperatures)
    m_idx, n_idx = np.nonzero(~np.eye(n, dtype=bool))
    if not batch:
        return Transitions(
            omega=e[n_idx] - e[m_idx],
            amp=s[:, m_idx, n_idx].T,
            population=p[:, m_idx],
            temperatures=_temperatures(temperatures),
            volume=volume,
        )
    return Transitions(
        omega=(e[:, n_idx] - e[:, m_idx]).reshape(-1),
        amp=np.moveaxis(s[:, :, m_idx, n_idx], 1, 2).reshape(-1, 6),
        population=p[:, :, m_idx].reshape(p.shape[0], -1),
        temperatures=_temperatures(temperatures),
        volume=volume,
    )


# --------------------------------------------------------------------------------------------
# Line shapes
# --------------------------------------------------------------------------------------------
def _box_hilbert(mid, lo, hi, width):
    """Hilbert transform of box lines on [lo, hi) (columns [B, 1]) at the points ``mid`` [n_ω]: ln|(ω − lo)/(ω − hi)|/Δ."""
    return np.log(np.abs((mid[None, :] - lo) / (mid[None, :] - hi))) / width


def line_profiles(centres, omega, line: str, width, part: str):
    """Line-shape matrix ``[M, n_ω]`` for transitions at ``centres`` (ω_k) on the grid ``omega``.

    ``part="im"`` gives g(ω − ω_k) (normalized, units 1/E*), ``part="re"`` gives R(ω − ω_k), the
    Kramers–Kronig partner (see module docstring). For ``line="bins"`` omega are edges and the
    matrix is ``[M, len(edges) − 1]``.
    """
    c = np.asarray(centres, dtype=float)
    w = np.asarray(omega, dtype=float)
    if line == "bins":
        widths = np.diff(w)
        if part == "im":
            j = np.searchsorted(w, c, side="right") - 1
            out = np.zeros((c.size, widths.size))
            ok = (j >= 0) & (j < widths.size)
            out[np.nonzero(ok)[0], j[ok]] = 1.0 / widths[j[ok]]
            return out
        # Hilbert transform of the binned (box) line, at the bin centres: finite for every position
        mid = 0.5 * (w[1:] + w[:-1])
        j = np.searchsorted(w, c, side="right") - 1
        inside = (j >= 0) & (j < widths.size)
        out = np.empty((c.size, widths.size))
        out[~inside] = 1.0 / (mid[None, :] - c[~inside, None])
        ji = j[inside]
        lo, hi = w[ji][:, None], w[ji + 1][:, None]
        out[inside] = _box_hilbert(mid, lo, hi, widths[ji][:, None])
        return out
    x = w[None, :] - c[:, None]
    if line == "lorentzian":
        if part == "im":
            return (width / np.pi) / (x * x + width * width)
        return x / (x * x + width * width)
    # gaussian, width = standard deviation σ
    if part == "im":
        return np.exp(-0.5 * (x / width) ** 2) / (width * np.sqrt(2.0 * np.pi))
    s2 = np.sqrt(2.0) * width
    return (2.0 / s2) * dawsn(x / s2)


def _spectral_sum(trans: Transitions, weights, omega, line, width, part, sign_pair: int | None, done=None):
    """``Σ_k p_k(T) W_kc [L(ω − ω_k) + sign_pair·L(ω + ω_k)]`` → [n_T, n_c, n_ω] (chunked GEMM).

    ``weights`` [M, n_c]; ``sign_pair`` None drops the mirrored term. L is g (part="im") or R.
    ``done``: sums already computed on this grid, keyed by ``(part, sign_pair)`` (:func:`chi_tensors`).
    """
    if done is not None and (part, sign_pair) in done:
        return done[(part, sign_pair)]
    if line == "bins":
        return _binned_sum(trans, weights, omega, part, sign_pair)
    n_t, m = trans.population.shape
    n_c = weights.shape[1]
    n_w = omega.size
    out = np.zeros((n_t, n_c, n_w))
    for start in range(0, m, _CHUNK):
        sl = slice(start, min(start + _CHUNK, m))
        prof = line_profiles(trans.omega[sl], omega, line, width, part)
        if sign_pair is not None:
            prof = prof + sign_pair * line_profiles(-trans.omega[sl], omega, line, width, part)
        q = trans.population[:, sl, None] * weights[None, sl, :]  # [n_T, m, n_c]
        out += np.einsum("tmc,mw->tcw", q, prof, optimize=True)
    return out


@numba.njit(cache=True, nogil=True)
def _add_rows(out, rows, use, q, scale):
    """``out[rows[k]] += scale[rows[k]]·q[k]`` for every k with ``use[k]`` (in order of k)."""
    for k in range(q.shape[0]):
        if use[k]:
            r = rows[k]
            f = scale[r]
            for c in range(q.shape[1]):
                out[r, c] += f * q[k, c]


@numba.njit(cache=True, nogil=True)
def _add_re_profiles(prof, rows, inside, prof_in, mid, centres, sign):
    """``prof[k] += sign·prof_in[rows[k]]`` for a line inside the grid, else ``prof[k, i] += sign/(mid[i] − ω_k)``.

    The Re χ rows of :func:`_binned_sum` (the same products and quotients as NumPy's, element by element).
    """
    for k in range(prof.shape[0]):
        if inside[k]:
            r = rows[k]
            for i in range(prof.shape[1]):
                prof[k, i] += sign * prof_in[r, i]
        else:
            for i in range(prof.shape[1]):
                prof[k, i] += sign / (mid[i] - centres[k])


def _binned_sum(trans: Transitions, weights, edges, part, sign_pair: int | None):
    """:func:`_spectral_sum` for ``line="bins"``, with the line matrix gathered per bin.

    A line inside bin j has the profile of its bin alone, whatever its position in the bin
    (:func:`line_profiles`): 1/Δ_j on bin j for ``part="im"``, H_j(ω) = ln|(ω − ω_j^lo)/(ω − ω_j^hi)|/Δ_j
    at the bin centres for ``part="re"``. The [n_bins, n_ω] table of those rows is computed once and
    gathered, instead of one logarithm per transition and grid point; lines outside the grid (every
    mirrored line of a positive grid) get R = 1/(ω − ω_k) for Re and nothing for Im. The same values
    as :func:`line_profiles`, so this differs from the generic route only in the order of the final
    sums (tests/test_response.py).
    """
    widths = np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    n_w = widths.size
    n_t, m = trans.population.shape
    n_c = weights.shape[1]
    lo, hi = edges[:-1][:, None], edges[1:][:, None]
    prof_in = _box_hilbert(mid, lo, hi, widths[:, None]) if part == "re" else None
    terms = [(1.0, trans.omega)] + ([(float(sign_pair), -trans.omega)] if sign_pair is not None else [])
    out = np.zeros((n_w, n_t * n_c))
    for start in range(0, m, _BINS_CHUNK):
        sl = slice(start, min(start + _BINS_CHUNK, m))
        # q[k, t, c] = p_k(T_t)·W_kc, written straight into the [m, n_T·n_c] layout of the sums below
        q = np.multiply(trans.population.T[sl, :, None], weights[sl, None, :],
                        out=np.empty((sl.stop - sl.start, n_t, n_c))).reshape(-1, n_t * n_c)
        prof = np.zeros((q.shape[0], n_w)) if part == "re" else None
        for sign, centres in terms:
            c = centres[sl]
            j = np.searchsorted(edges, c, side="right") - 1
            inside = (j >= 0) & (j < n_w)
            if part == "im":  # one bin per line: summed directly, no product with the one-hot rows
                _add_rows(out, j, inside, q, sign / widths)
                continue
            _add_re_profiles(prof, j, inside, prof_in, mid, c, sign)
        if part == "re":
            out += prof.T @ q
    return np.ascontiguousarray(out.reshape(n_w, n_t, n_c).transpose(1, 2, 0))


@numba.njit(cache=True, nogil=True)
def _binned_pair_chunk(omega, amp, pop, start, stop, edges, mid, im_scale, prof_in, iu_a, iu_b, im_out, q, prof):
    """One chunk of :func:`_binned_pair`: transitions ``start … stop − 1``.

    Writes q[r, t·n_c + c] = p_k(T_t)·(amp_ka·amp_kb) and the Re χ row prof[r] of each transition (the
    line and its mirror, as :func:`_binned_sum` with ``sign_pair = −1``), and adds the Im χ̃ lines to
    ``im_out`` [n_ω, n_T·n_c] (as :func:`_binned_sum` with ``part = "im"``, no mirror). Element by
    element the products, quotients and sums of those NumPy routes, in the same order.
    """
    n_w = mid.shape[0]
    n_t = pop.shape[0]
    n_c = iu_a.shape[0]
    wk = np.empty(n_c)
    for k in range(start, stop):
        r = k - start
        for c in range(n_c):
            wk[c] = amp[k, iu_a[c]] * amp[k, iu_b[c]]
        for t in range(n_t):
            p = pop[t, k]
            for c in range(n_c):
                q[r, t * n_c + c] = p * wk[c]
        for i in range(n_w):
            prof[r, i] = 0.0
        for term in range(2):
            sign = 1.0 if term == 0 else -1.0
            centre = omega[k] if term == 0 else -omega[k]
            if centre < edges[0]:  # what searchsorted gives, without the search (every mirrored line)
                j = -1
            elif centre >= edges[n_w]:
                j = n_w
            else:
                j = np.searchsorted(edges, centre, side="right") - 1
            inside = j >= 0 and j < n_w
            if term == 0 and inside:
                f = im_scale[j]
                for col in range(n_t * n_c):
                    im_out[j, col] += f * q[r, col]
            if inside:
                for i in range(n_w):
                    prof[r, i] += sign * prof_in[j, i]
            else:
                for i in range(n_w):
                    prof[r, i] += sign / (mid[i] - centre)


def _binned_pair(trans: Transitions, edges) -> tuple[np.ndarray, np.ndarray]:
    """The 21 components' ``_binned_sum(…, "im", None)`` and ``_binned_sum(…, "re", −1)`` in one pass.

    :func:`chi_tensors`' route for binned lines (Im χ in the detailed-balance form and Re χ): one
    numba pass per chunk builds the weight columns, the Im χ̃ sums and the Re χ line rows, and one GEMM
    per chunk (the same as :func:`_binned_sum`'s) sums the Re χ rows. Bit for bit the two
    :func:`_binned_sum` calls (tests/test_response.py), without their [M, 21] weight columns and the
    second pass over the transitions. Returns ``(im, re)``, each [n_T, 21, n_ω].
    """
    widths = np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    n_w = widths.size
    n_t, m = trans.population.shape
    n_c = _IU[0].size
    prof_in = np.ascontiguousarray(_box_hilbert(mid, edges[:-1][:, None], edges[1:][:, None], widths[:, None]))
    im_scale = 1.0 / widths
    amp = np.ascontiguousarray(trans.amp)
    pop = np.ascontiguousarray(trans.population)
    omega = np.ascontiguousarray(trans.omega)
    iu_a, iu_b = _IU[0].astype(np.int64), _IU[1].astype(np.int64)
    im = np.zeros((n_w, n_t * n_c))
    re = np.zeros((n_w, n_t * n_c))
    for start in range(0, m, _BINS_CHUNK):
        stop = min(start + _BINS_CHUNK, m)
        q = np.empty((stop - start, n_t * n_c))
        prof = np.empty((stop - start, n_w))
        _binned_pair_chunk(omega, amp, pop, start, stop, edges, mid, im_scale, prof_in, iu_a, iu_b, im, q, prof)
        re += prof.T @ q
    return tuple(np.ascontiguousarray(x.reshape(n_w, n_t, n_c).transpose(1, 2, 0)) for x in (im, re))


def _projected_weights(trans, strain_a, strain_b):
    e_a = _strain("strain_a", strain_a)
    e_b = e_a if strain_b is None else _strain("strain_b", strain_b)
    return ((trans.amp @ e_a) * (trans.amp @ e_b))[:, None]


def _centres(omega, line):
    w = np.asarray(omega, dtype=float)
    return 0.5 * (w[1:] + w[:-1]) if line == "bins" else w


def _response(trans, wts, w, line, eta, quantity, form, done=None) -> np.ndarray:
    """Core of all response functions: ``[n_T, n_c, n_ω]`` for weight columns ``wts`` [M, n_c].

    ``done``: spectral sums on the grid ``w`` computed beforehand (see :func:`_spectral_sum`).
    """
    pref = -np.pi / trans.volume
    if quantity == "re_chi":
        return _spectral_sum(trans, wts, w, line, eta, "re", -1, done) / trans.volume
    if quantity == "im_chi_tilde":
        return pref * _spectral_sum(trans, wts, w, line, eta, "im", None, done)
    if form == "spectral":
        return pref * _spectral_sum(trans, wts, w, line, eta, "im", -1, done)
    # detailed balance: sign(ω)(1 − e^{−β|ω|}) Im χ̃(|ω|), Im χ̃ taken at the mirrored point/bin
    centres = _centres(w, line)
    tilde = pref * _spectral_sum(trans, wts, w, line, eta, "im", None, done)
    factor = thermal_factor(centres, trans.temperatures)[:, None, :]
    if np.all(centres >= 0):
        return factor * tilde
    if line == "bins":
        mirrored = -w[::-1]
        tilde_m = pref * _spectral_sum(trans, wts, mirrored, line, eta, "im", None)[..., ::-1]
    else:
        tilde_m = pref * _spectral_sum(trans, wts, -w, line, eta, "im", None)
    return factor * np.where(centres[None, None, :] >= 0, tilde, tilde_m)


# --------------------------------------------------------------------------------------------
# Public response functions
# --------------------------------------------------------------------------------------------
def im_chi_tilde(trans, omega, strain_a, strain_b=None, *, line: str = "lorentzian", width=None) -> np.ndarray:
    """Im χ̃_ab(T, ω) ``[n_T, n_ω]`` = −(π/V) Σ_k p_k (e_a·amp_k)(e_b·amp_k) g(ω − ω_k)  (Eq. 2.11 of [ZL]).

    Negative for ω > 0 when strain_b = strain_a (the default). ``omega`` in units of E* (bin edges
    for line="bins"); ``width`` in units of E* (η for Lorentzian, σ for Gaussian; unused for bins).
    Result in units of T*²/(E*·V).
    """
    trans = _check_transitions(trans)
    eta = _line_args(line, width)
    w = _omega_grid(omega, line)
    wts = _projected_weights(trans, strain_a, strain_b)
    return _response(trans, wts, w, line, eta, "im_chi_tilde", None)[:, 0, :]


def im_chi(
    trans, omega, strain_a, strain_b=None, *, line: str = "lorentzian", width=None, form: str = "detailed_balance"
) -> np.ndarray:
    """Im χ_ab(T, ω) ``[n_T, n_ω]``, negative for ω > 0 and odd in ω (Eq. 2.9, 2.11 of [ZL]).

    ``form="detailed_balance"``: (1 − e^{−βω}) Im χ̃(ω) (Eq. 2.11) for ω ≥ 0, extended as an odd
    function, Im χ(−ω) = −Im χ(ω) (exact for sharp lines; stable at T = 0, where the factor is 1 for
    ω > 0). For line="bins" the factor uses the bin centres and the mirror of a bin with negative
    centre is the bin reflected through ω = 0.
    ``form="spectral"``: Im χ̃(ω) − Im χ̃(−ω) = −(π/V) Σ_k p_k u_k v_k [g(ω − ω_k) − g(ω + ω_k)], the exact
    Kramers–Kronig partner of :func:`re_chi` (equal to the first form for sharp lines).
    """
    trans = _check_transitions(trans)
    if form not in _FORMS:
        raise InputError(f"form = {form!r}: must be one of {', '.join(_FORMS)}")
    eta = _line_args(line, width)
    w = _omega_grid(omega, line)
    wts = _projected_weights(trans, strain_a, strain_b)
    return _response(trans, wts, w, line, eta, "im_chi", form)[:, 0, :]


def re_chi(trans, omega, strain_a, strain_b=None, *, line: str = "lorentzian", width=None) -> np.ndarray:
    """Re χ_ab(T, ω) ``[n_T, n_ω]`` = (1/V) Σ_k p_k u_k v_k [R(ω − ω_k) − R(ω + ω_k)] from the spectral sum.

    For sharp lines R(x) = P(1/x), giving (1/V) Σ p_k u_k v_k 2ω_k/(ω² − ω_k²) (DESIGN); with a line
    shape R is the KK partner of g, so ``re_chi`` and ``im_chi(form="spectral")`` are an exact
    Kramers–Kronig pair. The static limit is negative, Re χ_aa(0) = −(2/V) Σ_k p_k u_k²/ω_k < 0
    (pairing each transition with its reverse). Units T*²/(E*·V).
    """
    trans = _check_transitions(trans)
    eta = _line_args(line, width)
    w = _omega_grid(omega, line)
    wts = _projected_weights(trans, strain_a, strain_b)
    return _response(trans, wts, w, line, eta, "re_chi", None)[:, 0, :]


# Mandel index pairs (a ≤ b) for the 21 independent components of χ_ab.
_IU = np.triu_indices(6)


def chi_tensor(
    trans, omega, *, quantity: str = "im_chi", line: str = "lorentzian", width=None, form: str = "detailed_balance"
) -> np.ndarray:
    """Full Mandel response tensor ``[n_T, n_ω, 6, 6]`` of ``quantity`` ∈ {im_chi, im_chi_tilde, re_chi}.

    ``χ_l = e_l·χ·e_l`` for any strain follows by contraction. Built from the 21 independent
    components in one pass over the transitions.
    """
    return chi_tensors(trans, omega, (quantity,), line=line, width=width, form=form)[0]


def chi_tensors(trans, omega, quantities=("im_chi", "re_chi"), *, line: str = "lorentzian", width=None,
                form: str = "detailed_balance") -> list:
    """:func:`chi_tensor` of each of ``quantities`` on the same transitions (the 21 weight columns built once)."""
    trans = _check_transitions(trans)
    for quantity in quantities:
        if quantity not in _QUANTITIES:
            raise InputError(f"quantity = {quantity!r}: must be one of {', '.join(_QUANTITIES)}")
    if form not in _FORMS:
        raise InputError(f"form = {form!r}: must be one of {', '.join(_FORMS)}")
    eta = _line_args(line, width)
    w = _omega_grid(omega, line)
    done = None
    if (line == "bins" and set(quantities) <= {"re_chi", "im_chi"} and form == "detailed_balance"
            and np.all(_centres(w, line) >= 0)):
        # one pass for both sums, no weight columns (a grid reaching below 0 needs Im χ̃ on the
        # mirrored grid as well and keeps the general route)
        im, re = _binned_pair(trans, w)
        done = {("im", None): im, ("re", -1): re}
        wts = None
    else:
        amp_t = np.ascontiguousarray(trans.amp.T)  # [6, M]: the 21 products as contiguous rows
        wts = (amp_t[_IU[0]] * amp_t[_IU[1]]).T  # [M, 21]
    tensors = []
    for quantity in quantities:
        comp = _response(trans, wts, w, line, eta, quantity, form, done)
        n_t, _, n_w = comp.shape
        out = np.zeros((n_t, n_w, 6, 6))
        out[:, :, _IU[0], _IU[1]] = np.moveaxis(comp, 1, 2)
        out[:, :, _IU[1], _IU[0]] = np.moveaxis(comp, 1, 2)
        tensors.append(out)
    return tensors


# --------------------------------------------------------------------------------------------
# Directions and powder average
# --------------------------------------------------------------------------------------------
def powder_directions(quadrature="icosahedron") -> np.ndarray:
    """Unit propagation directions ``[K, 3]`` for the powder (orientation) average, equal weights.

    ``"icosahedron"`` (default): the 6 axes through the vertices of a regular icosahedron. The 12
    vertices are a spherical 5-design, and χ_l(q) and the polarization-summed χ_t(q) are even
    polynomials of degree 4 in q, so this 6-point average is the **exact** orientation average (it
    equals the isotropic projection of Eq. 2.12). An integer K gives a Fibonacci sphere of K points
    (z_i = 1 − (2i + 1)/K, φ_i = i·π(3 − √5)), an approximate quadrature kept for comparison.
    """
    if isinstance(quadrature, str):
        if quadrature != "icosahedron":
            raise InputError(f"powder = {quadrature!r}: must be 'icosahedron' or an integer K ≥ 1")
        phi = 0.5 * (1.0 + np.sqrt(5.0))
        v = np.array([[0.0, 1.0, phi], [0.0, 1.0, -phi], [1.0, phi, 0.0], [1.0, -phi, 0.0],
                      [phi, 0.0, 1.0], [-phi, 0.0, 1.0]])
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    if isinstance(quadrature, (bool, np.bool_)) or not isinstance(quadrature, (int, np.integer)) or quadrature < 1:
        raise InputError(f"powder = {quadrature!r}: must be 'icosahedron' or an integer K ≥ 1")
    k = int(quadrature)
    i = np.arange(k)
    z = 1.0 - (2.0 * i + 1.0) / k
    rho = np.sqrt(1.0 - z * z)
    ang = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([rho * np.cos(ang), rho * np.sin(ang), z], axis=1)


def _two_polarizations(q, p1=None):
    q = np.asarray(q, dtype=float)
    q = q / np.linalg.norm(q)
    if p1 is None:
        trial = np.array([1.0, 0.0, 0.0]) if abs(q[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        p1 = trial - q * (trial @ q)
    p1 = np.asarray(p1, dtype=float)
    p1 = p1 - q * (p1 @ q)
    p1 = p1 / np.linalg.norm(p1)
    p2 = np.cross(q, p1)
    return q, p1, p2


def _contract(tensor, e):
    return np.einsum("a,twab,b->tw", e, tensor, e)


def chi_components(
    trans,
    omega,
    directions=("100", "110:001", "110:1-10", "111"),
    *,
    quantity: str = "im_chi",
    line: str = "lorentzian",
    width=None,
    form: str = "detailed_balance",
) -> dict:
    """Longitudinal and transverse response along named directions and powder-averaged (Eq. 2.11, 2.12).

    Parameters
    ----------
    trans : Transitions
    omega : array_like
        Frequency grid (bin edges for ``line = "bins"``), units of E*.
    directions : sequence
        Strings ``"q"`` or ``"q:p"`` (Miller indices, :func:`blocksim.model.tensors.parse_direction`)
        or 3-vectors (keyed by their string).
    quantity : {"im_chi", "im_chi_tilde", "re_chi"}
    line, width, form
        As in :func:`chi_tensor`.

    Returns
    -------
    dict
        ``{name: {"q": q, "l": [n_T, n_ω], "t": ..., "t1": ..., "t2": ...}, ..., "powder": {...},
        "tensor": [n_T, n_ω, 6, 6]}``. For each direction q: ``"l"`` = e_l·χ·e_l (χ_qqqq); with
        orthonormal polarizations p1 (the given p, else a fixed vector ⊥ q) and p2 = q × p1,
        ``"t1"``, ``"t2"`` = χ_qp qp and ``"t"`` = their mean (e_l, e_t from
        :func:`~blocksim.model.tensors.direction_strains`). ``"powder"`` holds the orientation average
        :func:`~blocksim.model.tensors.powder_lt` ("t1" = "t2" = "t" by isotropy). "MB" in blocksim
        means :func:`mb_ratio` of the powder "l" and "t" Im χ (DESIGN). Units: those of χ,
        T*²/E* per volume V.
    """
    tensor = chi_tensor(trans, omega, quantity=quantity, line=line, width=width, form=form)
    result: dict = {"tensor": tensor}
    items = []
    for d in directions:
        if isinstance(d, str):
            try:
                q, p1 = parse_direction(d)
            except ValueError as exc:
                raise InputError(f"directions = {d!r}: {exc}") from None
            items.append((d, np.array(q, float), None if p1 is None else np.array(p1, float)))
        else:
            q = np.asarray(d, dtype=float)
            if q.shape != (3,) or not np.all(np.isfinite(q)) or not np.linalg.norm(q) > 0:
                raise InputError(f"directions = {q.tolist()}: each must be a non-zero finite 3-vector")
            items.append((str(tuple(float(x) for x in q)), q, None))
    for name, q, p1 in items:
        q, p1, p2 = _two_polarizations(q, p1)
        e_l, e_t1 = direction_strains(q, p1)
        _, e_t2 = direction_strains(q, p2)
        t1, t2 = _contract(tensor, e_t1), _contract(tensor, e_t2)
        result[name] = {"q": q, "l": _contract(tensor, e_l), "t1": t1, "t2": t2, "t": 0.5 * (t1 + t2)}
    chi_l, chi_t = powder_lt(tensor)
    result["powder"] = {"l": chi_l, "t": chi_t, "t1": chi_t, "t2": chi_t}
    return result


# --------------------------------------------------------------------------------------------
# Kramers–Kronig, absorption, MB ratio
# --------------------------------------------------------------------------------------------
def kramers_kronig_re(omega, im_chi_values) -> np.ndarray:
    """Numerical KK transform ``Re χ(ω_i) = (1/π) P∫ Im χ(ω')/(ω' − ω_i) dω'`` on the grid itself.

    ``omega`` [N] strictly increasing (need not be uniform); ``im_chi_values`` [..., N]. Im χ is
    taken piecewise linear between grid points and zero outside the grid, and each segment is
    integrated exactly against 1/(ω' − ω_i); the logarithmic singularities of the two segments next
    to ω_i cancel (principal value). Error: O(h²) from the interpolation plus the truncation of the
    tails outside the grid (make the grid cover the spectrum; for odd Im χ make it symmetric).
    """
    w = np.asarray(omega, dtype=float)
    f = np.asarray(im_chi_values, dtype=float)
    if w.ndim != 1 or w.size < 2 or np.any(np.diff(w) <= 0) or not np.all(np.isfinite(w)):
        raise InputError("omega: must be a 1-D strictly increasing finite grid of ≥ 2 points")
    if f.shape[-1] != w.size:
        raise InputError(f"im_chi shape = {f.shape}: last axis must have length {w.size} (the omega grid)")
    a, b = w[:-1], w[1:]
    h = b - a
    fa, fb = f[..., :-1], f[..., 1:]
    slope = (fb - fa) / h
    out = np.empty(f.shape)
    for i, wi in enumerate(w):
        da, db = np.abs(a - wi), np.abs(b - wi)
        with np.errstate(divide="ignore"):
            la = np.where(da > 0, np.log(np.where(da > 0, da, 1.0)), 0.0)
            lb = np.where(db > 0, np.log(np.where(db > 0, db, 1.0)), 0.0)
        f_at = fa + slope * (wi - a)  # the segment's line evaluated at ω_i
        out[..., i] = np.sum(f_at * (lb - la) + slope * h, axis=-1)
    return out / np.pi


def absorption_rate(im_chi_tilde_value, omega, temperature, *, amplitude_k: float = 1.0, volume: float = 1.0):
    """Energy absorption rate Ė = −2 L³ (Ak)² ω (1 − e^{−βω}) Im χ̃(T, ω)  (Eq. 3.1 of [ZL]); positive.

    ``im_chi_tilde_value`` broadcastable to [n_T, n_ω] (or a scalar), ``omega`` scalar or [n_ω] (units
    of E*), ``temperature`` scalar or [n_T] (units of E*), ``amplitude_k`` = A·k (dimensionless strain
    amplitude), ``volume`` = L³. Scalar omega/temperature axes are dropped from the result. With
    Eq. (2.11) for one TTLS this reproduces Eq. (2.2) exactly (see tests/test_response.py).
    """
    w = np.asarray(omega, dtype=float)
    t = np.asarray(temperature, dtype=float)
    if w.ndim > 1 or not np.all(np.isfinite(w)) or w.size == 0:
        raise InputError(f"omega = {w.tolist()}: must be a finite scalar or non-empty 1-D grid")
    ak = float(amplitude_k)
    vol = float(volume)
    if not np.isfinite(ak):
        raise InputError(f"amplitude_k = {amplitude_k!r}: must be a finite number")
    if not (np.isfinite(vol) and vol > 0):
        raise InputError(f"volume = {volume!r}: must be a finite number > 0")
    factor = thermal_factor(np.atleast_1d(w), np.atleast_1d(t))  # [n_T, n_ω]
    chi = np.broadcast_to(np.asarray(im_chi_tilde_value, dtype=float), factor.shape)
    rate = -2.0 * vol * ak * ak * np.atleast_1d(w)[None, :] * factor * chi
    if w.ndim == 0:
        rate = rate[:, 0]
    if t.ndim == 0:
        rate = rate[0]
    return rate if np.ndim(rate) else float(rate)


def mb_ratio(im_chi_l, im_chi_t):
    """Meissner–Berret ratio sqrt(Im χ_l / Im χ_t) (elementwise; χ_l, χ_t of Eq. 2.12 of [ZL], BRIEF §1.7).

    Both must be finite and of the same sign (both negative for ω > 0); Im χ_t = 0 or opposite
    signs raise InputError.
    """
    l_ = np.asarray(im_chi_l, dtype=float)
    t_ = np.asarray(im_chi_t, dtype=float)
    if not (np.all(np.isfinite(l_)) and np.all(np.isfinite(t_))):
        raise InputError("im_chi_l, im_chi_t: must be finite")
    if np.any(t_ == 0):
        raise InputError("im_chi_t = 0: the ratio is undefined (no transverse spectral weight)")
    ratio = l_ / t_
    if np.any(ratio < 0):
        raise InputError("im_chi_l / im_chi_t < 0: the two must have the same sign")
    out = np.sqrt(ratio)
    return out if np.ndim(out) else float(out)
