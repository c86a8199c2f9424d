"""Phonon-mediated stress–stress couplings Λ^(ss') and the dipole–dipole coefficients.

Units: ρ c_t² = 1 and lengths in units of the lattice spacing (or whatever unit ``r`` is given in);
Λ then has units of 1/length³. Multiply by g (BRIEF §2) to get energies in units of E*.

Index order and symmetries
--------------------------
``stress_coupling(r)[i, j, k, l] = Λ_ijkl(r)`` couples ``T_ij`` of the block at the origin to ``T_kl``
of the block at ``r``: ``V = Σ_{s≠s'} Σ_ijkl Λ_ijkl(x_s − x_s') T_ij^(s) T_kl^(s')`` (Eq. 2.13, 2.16; the
sum runs over ordered pairs, so each pair appears twice). Λ has the symmetries
``Λ_ijkl = Λ_jikl = Λ_ijlk = Λ_klij`` and ``Λ(−r) = Λ(r)``.

Forms
-----
* ``"zhou-leggett"`` — Eq. (A15) of Zhou & Leggett [ZL]:
  ``Λ = −Λ̃(n)/(8π ρ c_t² |r|³)`` with
  ``Λ̃ = ¼{(δ_jl − 3n_j n_l)δ_ik + (δ_jk − 3n_j n_k)δ_il + (δ_ik − 3n_i n_k)δ_jl + (δ_il − 3n_i n_l)δ_jk}
  + ½α{−(δ_ij δ_kl + δ_ik δ_jl + δ_jk δ_il) + 3(n_i n_j δ_kl + n_i n_k δ_jl + n_i n_l δ_jk + n_j n_k δ_il
  + n_j n_l δ_ik + n_k n_l δ_ij) − 15 n_i n_j n_k n_l}``, ``α = 1 − c_t²/c_l²``.
  (Eq. 2.15 of [ZL] has a misplaced parenthesis; (A15) is the correct one, BRIEF §1b.)
* ``"joffrin-levelut"`` — Eq. (A1) of [ZL] (after [JL75]), kept for comparison:
  ``Λ̃_JL = −2(δ_jl − 3n_j n_l)δ_ik + 2α{…same bracket…}``. It lacks the minor symmetries; the Mandel
  form of it uses its projection onto them.
"""

from __future__ import annotations

import numpy as np
import numba

from .._numba import serial_twin
from ..choices import FORMS, SQRT_FOUR_THIRDS
from ..errors import InputError
from .tensors import MANDEL_INDEX, MANDEL_WEIGHT, to_mandel4

__all__ = [
    "FORMS",
    "alpha_from_ratio",
    "lambda_tilde",
    "stress_coupling",
    "stress_coupling_mandel",
    "displacement_table",
    "displacement_table_reference",
    "lattice_positions",
    "pair_couplings_reference",
    "delta_lambda",
    "delta_lambda_eq217",
    "dipole_coupling",
    "delta_dipole_coupling",
    "kelvin_green",
]

_FORM_CODE = {"zhou-leggett": 0, "joffrin-levelut": 1}


def alpha_from_ratio(cl_over_ct: float) -> float:
    """``α = 1 − c_t²/c_l²`` (below Eq. 3.5 of [ZL]); requires ``c_l/c_t > √(4/3)`` (positive bulk modulus)."""
    x = float(cl_over_ct)
    if not np.isfinite(x) or x <= SQRT_FOUR_THIRDS:
        raise InputError(
            f"cl_over_ct = {cl_over_ct!r}: must be a finite number > sqrt(4/3) ≈ 1.1547 "
            "(a positive bulk modulus)"
        )
    return 1.0 - 1.0 / (x * x)


def _separation(r, name: str = "r") -> float:
    """|r| of a finite non-zero 3-vector, else InputError naming the field."""
    r = np.asarray(r, dtype=float)
    if r.shape != (3,) or not np.all(np.isfinite(r)):
        raise InputError(f"{name} = {r.tolist()}: must be a finite 3-vector")
    dist = float(np.linalg.norm(r))
    if not dist > 0:
        raise InputError(f"{name} = {r.tolist()}: must be non-zero (distinct blocks)")
    return dist


def _check_form(form: str) -> int:
    if form not in _FORM_CODE:
        raise InputError(f"form = {form!r}: must be one of {', '.join(FORMS)}")
    return _FORM_CODE[form]


# --------------------------------------------------------------------------------------------
# Scalar kernels (numba, also used by the pure-Python reference through .py_func).
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _lambda_tilde_into(n, alpha, form, out):
    """Fill ``out[3,3,3,3]`` with Λ̃_ijkl(n) of Eq. (A15) (form 0) or Eq. (A1) (form 1).

    n: float64[3] unit vector; alpha: float; form: int; out: float64[3,3,3,3].
    """
    for i in range(3):
        for j in range(3):
            for k in range(3):
                for l in range(3):
                    dij = 1.0 if i == j else 0.0
                    dik = 1.0 if i == k else 0.0
                    dil = 1.0 if i == l else 0.0
                    djk = 1.0 if j == k else 0.0
                    djl = 1.0 if j == l else 0.0
                    dkl = 1.0 if k == l else 0.0
                    bracket = (
                        -(dij * dkl + dik * djl + djk * dil)
                        + 3.0
                        * (
                            n[i] * n[j] * dkl
                            + n[i] * n[k] * djl
                            + n[i] * n[l] * djk
                            + n[j] * n[k] * dil
                            + n[j] * n[l] * dik
                            + n[k] * n[l] * dij
                        )
                        - 15.0 * n[i] * n[j] * n[k] * n[l]
                    )
                    if form == 0:
                        first = 0.25 * (
                            (djl - 3.0 * n[j] * n[l]) * dik
                            + (djk - 3.0 * n[j] * n[k]) * dil
                            + (dik - 3.0 * n[i] * n[k]) * djl
                            + (dil - 3.0 * n[i] * n[l]) * djk
                        )
                        out[i, j, k, l] = first + 0.5 * alpha * bracket
                    else:
                        first = -2.0 * (djl - 3.0 * n[j] * n[l]) * dik
                        out[i, j, k, l] = first + 2.0 * alpha * bracket


_MI = np.array([p[0] for p in MANDEL_INDEX], dtype=np.int64)
_MJ = np.array([p[1] for p in MANDEL_INDEX], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _coupling_mandel_into(dx, dy, dz, alpha, form, mi, mj, w, work, out):
    """Fill ``out[6,6]`` with the Mandel matrix of Λ(r) for r = (dx, dy, dz) ≠ 0 (ρc_t² = 1).

    The 4-index tensor is projected onto its minor symmetries before conversion (a no-op for A15).
    work: float64[3,3,3,3] scratch; mi, mj: int64[6] Mandel index pairs; w: float64[6] weights.
    """
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    n = np.empty(3)
    n[0] = dx / r
    n[1] = dy / r
    n[2] = dz / r
    _lambda_tilde_into(n, alpha, form, work)
    pref = -1.0 / (8.0 * np.pi * r * r * r)
    for a in range(6):
        i = mi[a]
        j = mj[a]
        for b in range(6):
            k = mi[b]
            l = mj[b]
            sym = 0.25 * (work[i, j, k, l] + work[j, i, k, l] + work[i, j, l, k] + work[j, i, l, k])
            out[a, b] = pref * sym * w[a] * w[b]


@numba.njit(cache=True, nogil=True, parallel=True)
def _displacement_table_kernel_parallel(n0, alpha, form, mi, mj, w, table):
    """Fill ``table[2n0−1, 2n0−1, 2n0−1, 6, 6]`` with Λ(d) for integer displacements d (0 at d = 0).

    Index ``(dx + n0 − 1, dy + n0 − 1, dz + n0 − 1)`` holds displacement ``(dx, dy, dz)``.
    """
    m = 2 * n0 - 1
    for ix in numba.prange(m):
        work = np.empty((3, 3, 3, 3))
        for iy in range(m):
            for iz in range(m):
                dx = float(ix - (n0 - 1))
                dy = float(iy - (n0 - 1))
                dz = float(iz - (n0 - 1))
                if dx == 0.0 and dy == 0.0 and dz == 0.0:
                    for a in range(6):
                        for b in range(6):
                            table[ix, iy, iz, a, b] = 0.0
                else:
                    _coupling_mandel_into(dx, dy, dz, alpha, form, mi, mj, w, work, table[ix, iy, iz])


_displacement_table_kernel_serial = serial_twin(_displacement_table_kernel_parallel)


#: Tables with fewer entries than this are filled serially: starting the thread pool costs up to a
#: scheduler time slice (several ms on a busy 2-core machine), more than filling a small table.
TABLE_PARALLEL_MIN_ENTRIES = 8000


def _displacement_table_kernel(n0, alpha, form, mi, mj, w, table):
    """Fill ``table[2n0−1, 2n0−1, 2n0−1, 6, 6]`` with Λ(d) (0 at d = 0); serial below
    :data:`TABLE_PARALLEL_MIN_ENTRIES` entries, else the prange kernel. Both give identical tables."""
    m = 2 * n0 - 1
    if m * m * m >= TABLE_PARALLEL_MIN_ENTRIES:
        _displacement_table_kernel_parallel(n0, alpha, form, mi, mj, w, table)
    else:
        _displacement_table_kernel_serial(n0, alpha, form, mi, mj, w, table)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def lambda_tilde(n, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Angular factor Λ̃_ijkl(n) ``[3,3,3,3]`` of Eq. (A15) (or Eq. (A1) for ``form="joffrin-levelut"``).

    ``n`` is normalized internally; it must be non-zero.
    """
    n = np.asarray(n, dtype=float)
    norm = np.linalg.norm(n)
    if not norm > 0:
        raise InputError(f"n = {n.tolist()}: must be a non-zero vector")
    out = np.empty((3, 3, 3, 3))
    _lambda_tilde_into(n / norm, alpha_from_ratio(cl_over_ct), _check_form(form), out)
    return out


def stress_coupling(r, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Λ_ijkl(r) ``[3,3,3,3]`` = −Λ̃_ijkl(n)/(8π|r|³) in units where ρ c_t² = 1 (Eq. A15 / A1 of [ZL]).

    ``r`` is the separation ``x_s − x_s'`` (any length unit; Λ is then in 1/unit³). Λ(−r) = Λ(r).
    """
    dist = _separation(r)
    r = np.asarray(r, dtype=float)
    return -lambda_tilde(r / dist, cl_over_ct, form) / (8.0 * np.pi * dist**3)


def stress_coupling_mandel(r, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Λ(r) of Eq. (A15) of [ZL] as a 6×6 Mandel matrix, so that ``Σ_ijkl Λ_ijkl T_ij T'_kl = T·Λ·T'`` (Mandel vectors)."""
    return to_mandel4(stress_coupling(r, cl_over_ct, form))


def lattice_positions(n0: int) -> np.ndarray:
    """Integer positions ``[n0³, 3]`` of an n0×n0×n0 cubic lattice, in C order (x slowest, z fastest)."""
    g = np.arange(n0)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)


def displacement_table(n0: int, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Λ (Eq. A15 of [ZL], or A1) for every lattice displacement of an n0³ cube, ``[2n0−1, 2n0−1, 2n0−1, 6, 6]`` (numba kernel).

    On a lattice Λ depends only on the displacement, so this one table of (2n0−1)³ Mandel matrices
    serves every pair: ``Λ^(ss') = table[x_s − x_s' + n0 − 1]``. Lattice spacing 1, ρ c_t² = 1. The
    entry at zero displacement is 0 (no self-interaction).
    """
    n0 = int(n0)
    if n0 < 1:
        raise InputError(f"n0 = {n0}: must be an integer ≥ 1")
    alpha = alpha_from_ratio(cl_over_ct)
    m = 2 * n0 - 1
    table = np.empty((m, m, m, 6, 6))
    _displacement_table_kernel(n0, alpha, _check_form(form), _MI, _MJ, MANDEL_WEIGHT, table)
    return table


def displacement_table_reference(n0: int, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Slow, obvious reference for :func:`displacement_table` (per-displacement :func:`stress_coupling_mandel`)."""
    m = 2 * n0 - 1
    table = np.zeros((m, m, m, 6, 6))
    for ix in range(m):
        for iy in range(m):
            for iz in range(m):
                d = np.array([ix, iy, iz], dtype=float) - (n0 - 1)
                if np.any(d != 0):
                    table[ix, iy, iz] = stress_coupling_mandel(d, cl_over_ct, form)
    return table


def pair_couplings_reference(positions, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Per-pair reference: ``[N, N, 6, 6]`` array of Λ^(ss') (zero on the diagonal). Small N only."""
    positions = np.asarray(positions, dtype=float)
    n = len(positions)
    out = np.zeros((n, n, 6, 6))
    for s in range(n):
        for t in range(n):
            if s != t:
                out[s, t] = stress_coupling_mandel(positions[s] - positions[t], cl_over_ct, form)
    return out


def kelvin_green(r, cl_over_ct: float) -> np.ndarray:
    """Kelvin point-force Green's function of an isotropic solid, ``G_ik(r)`` [3,3], ρ c_t² = 1.

    ``G_ik = [(2 − α) δ_ik + α n_i n_k] / (8π |r|)`` with α = 1 − c_t²/c_l² (BRIEF §1.2).
    """
    dist = _separation(r)
    n = np.asarray(r, dtype=float) / dist
    alpha = alpha_from_ratio(cl_over_ct)
    return ((2.0 - alpha) * np.eye(3) + alpha * np.outer(n, n)) / (8.0 * np.pi * dist)


def delta_lambda(r, delta_r, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """First-order change ΔΛ_ijkl ``[3,3,3,3]`` when the separation changes from r to r + Δr.

    This is the quantity of Eq. (2.17) of [ZL]: with ``Δx = |Δr|``, ``m = Δr/|Δr|`` and
    ``cos θ = m·n``, ``ΔΛ = −(8π)⁻¹ [ (∂Λ̃/∂n)·Δn / x³ − 3 Λ̃ cos θ Δx / x⁴ ]`` with
    ``Δn = (Δx/x)(m − n cos θ)``. It is evaluated in closed form (the derivative of Eq. A15), and the
    tests check it against a finite difference of :func:`stress_coupling`. For a uniform external
    strain e, ``Δr = e·r``. ρ c_t² = 1.
    """
    x = _separation(r)
    r = np.asarray(r, dtype=float)
    delta_r = np.asarray(delta_r, dtype=float)
    if delta_r.shape != (3,) or not np.all(np.isfinite(delta_r)):
        raise InputError(f"delta_r = {delta_r.tolist()}: must be a finite 3-vector")
    n = r / x
    alpha = alpha_from_ratio(cl_over_ct)
    code = _check_form(form)
    dn = (delta_r - n * (n @ delta_r)) / x
    # Λ̃ is a polynomial in n of degree ≤ 4; its directional derivative is exact by complex step.
    h = 1e-30
    work = np.empty((3, 3, 3, 3), dtype=float)
    dtilde = _lambda_tilde_complex_step(n, dn, alpha, code, h)
    _lambda_tilde_into(n, alpha, code, work)
    return -(dtilde / x**3 - 3.0 * work * (n @ delta_r) / x**4) / (8.0 * np.pi)


def _lambda_tilde_complex_step(n, dn, alpha, code, h):
    """Directional derivative ``(∂Λ̃/∂n)·dn`` by the complex-step method (exact to rounding)."""
    nc = n.astype(complex) + 1j * h * dn
    d = np.eye(3)
    t1 = (
        np.einsum("jl,ik->ijkl", d - 3 * np.outer(nc, nc), d)
        + np.einsum("jk,il->ijkl", d - 3 * np.outer(nc, nc), d)
        + np.einsum("ik,jl->ijkl", d - 3 * np.outer(nc, nc), d)
        + np.einsum("il,jk->ijkl", d - 3 * np.outer(nc, nc), d)
    )
    nn = np.outer(nc, nc)
    bracket = (
        -(np.einsum("ij,kl->ijkl", d, d) + np.einsum("ik,jl->ijkl", d, d) + np.einsum("jk,il->ijkl", d, d))
        + 3
        * (
            np.einsum("ij,kl->ijkl", nn, d)
            + np.einsum("ik,jl->ijkl", nn, d)
            + np.einsum("il,jk->ijkl", nn, d)
            + np.einsum("jk,il->ijkl", nn, d)
            + np.einsum("jl,ik->ijkl", nn, d)
            + np.einsum("kl,ij->ijkl", nn, d)
        )
        - 15 * np.einsum("i,j,k,l->ijkl", nc, nc, nc, nc)
    )
    if code == 0:
        val = 0.25 * t1 + 0.5 * alpha * bracket
    else:
        val = -2.0 * np.einsum("jl,ik->ijkl", d - 3 * nn, d) + 2.0 * alpha * bracket
    return val.imag / h


def delta_lambda_eq217(r, delta_r, cl_over_ct: float) -> np.ndarray:
    """ΔΛ_ijkl as printed in Eq. (2.17) of [ZL], for comparison with :func:`delta_lambda`.

    The printed braces are read as the dimensionless change of Λ̃ (the ``Δx/x⁵`` factor combined with
    the leading ``x/Δx`` and the trailing ``Δx/x⁴`` to give the dimension of Λ), and the prefactor
    −1/(8π ρ c_t²) of Eq. (A15) is restored:
    ``ΔΛ = −(8π)⁻¹ ({…} − 3 Λ̃ cos θ) Δx/x⁴``. The tests report how this differs from the exact
    derivative (they agree to rounding: the printed equation is the exact first-order change, once
    read this way); blocksim's physics uses :func:`delta_lambda`.
    """
    x = _separation(r)
    dx = _separation(delta_r, "delta_r")
    r = np.asarray(r, dtype=float)
    delta_r = np.asarray(delta_r, dtype=float)
    n = r / x
    m = delta_r / dx
    c = m @ n
    alpha = alpha_from_ratio(cl_over_ct)
    d = np.eye(3)
    e = np.einsum
    braces = 0.75 * (
        2.0 * (e("j,l,ik->ijkl", n, n, d) + e("j,k,il->ijkl", n, n, d) + e("i,k,jl->ijkl", n, n, d)
               + e("i,l,jk->ijkl", n, n, d)) * c
        - (e("j,l,ik->ijkl", m, n, d) + e("l,j,ik->ijkl", m, n, d)
           + e("j,k,il->ijkl", m, n, d) + e("k,j,il->ijkl", m, n, d)
           + e("i,k,jl->ijkl", m, n, d) + e("k,i,jl->ijkl", m, n, d)
           + e("i,l,jk->ijkl", m, n, d) + e("l,i,jk->ijkl", m, n, d))
    )
    braces = braces - 3.0 * alpha * c * (
        e("k,l,ij->ijkl", n, n, d) + e("j,l,ik->ijkl", n, n, d) + e("k,j,il->ijkl", n, n, d)
        + e("i,l,jk->ijkl", n, n, d) + e("i,k,jl->ijkl", n, n, d) + e("i,j,kl->ijkl", n, n, d)
    )
    braces = braces + 1.5 * alpha * (
        e("i,l,jk->ijkl", m, n, d) + e("i,k,jl->ijkl", m, n, d) + e("i,j,kl->ijkl", m, n, d)
        + e("j,l,ik->ijkl", m, n, d) + e("j,k,il->ijkl", m, n, d) + e("j,i,kl->ijkl", m, n, d)
        + e("k,l,ij->ijkl", m, n, d) + e("k,i,jl->ijkl", m, n, d) + e("k,j,il->ijkl", m, n, d)
        + e("l,k,ij->ijkl", m, n, d) + e("l,i,jk->ijkl", m, n, d) + e("l,j,ik->ijkl", m, n, d)
    )
    braces = braces - 7.5 * alpha * (
        e("i,j,k,l->ijkl", m, n, n, n) + e("j,i,k,l->ijkl", m, n, n, n)
        + e("k,i,j,l->ijkl", m, n, n, n) + e("l,i,j,k->ijkl", m, n, n, n)
    ) + 30.0 * alpha * e("i,j,k,l->ijkl", n, n, n, n) * c
    lt = lambda_tilde(n, cl_over_ct)
    return -(braces - 3.0 * lt * c) * dx / x**4 / (8.0 * np.pi)


def dipole_coupling(r, epsilon: float) -> np.ndarray:
    """Electric dipole–dipole coefficient μ_ij ``[3,3]`` of Eq. (5.2) of [ZL]: ``(δ_ij − 3n_i n_j)/(8π ε |r|³)``.

    ``epsilon`` is the dielectric constant in the engine's units (ε > 0).
    """
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon = {epsilon!r}: must be a finite number > 0")
    x = _separation(r)
    n = np.asarray(r, dtype=float) / x
    return (np.eye(3) - 3.0 * np.outer(n, n)) / (8.0 * np.pi * epsilon * x**3)


def delta_dipole_coupling(r, delta_r, epsilon: float) -> np.ndarray:
    """Δμ_ij ``[3,3]`` of Eq. (5.3) of [ZL]:
    ``3Δx/(8π ε x⁴) [(5 n_i n_j − δ_ij) cos θ − (n_j m_i + n_i m_j)]``, first order in Δr = Δx·m."""
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon = {epsilon!r}: must be a finite number > 0")
    x = _separation(r)
    dx = _separation(delta_r, "delta_r")
    n = np.asarray(r, dtype=float) / x
    m = np.asarray(delta_r, dtype=float) / dx
    c = m @ n
    return 3.0 * dx / (8.0 * np.pi * epsilon * x**4) * (
        (5.0 * np.outer(n, n) - np.eye(3)) * c - (np.outer(m, n) + np.outer(n, m))
    )
