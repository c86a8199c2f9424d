"""First-order perturbation theory (Eq. 3.2 of [ZL]) for large super blocks: numba kernels and solver.

Ground state and every single excitation |s,m⟩ in the product basis; the pair (double-excitation)
admixture of the ground state; resonant clusters diagonalized exactly; members with a one-body
resonance dressed exactly in their local field. O(N n²) memory beyond the displacement table.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from .._numba import serial_twin
from ..errors import InputError
from .spectrum import Spectrum
from .superblock import SuperBlock, dipole_table

__all__ = ["PERTURBATIVE_LABELS_MAX", "RESONANT_FRACTION_WARN", "ResonanceWarning",
           "perturbative_amplitudes", "solve_perturbative"]

#: The perturbative solver fills ``Spectrum.labels`` ([K, N] int64, O(N²) memory) only up to this
#: many entries (32 MB); above it ``labels`` is None (docs/performance.md).
PERTURBATIVE_LABELS_MAX = 4_000_000
#: Warn when more than this fraction of single excitations sits in resonant clusters.
RESONANT_FRACTION_WARN = 0.5


class ResonanceWarning(UserWarning):
    """Most single excitations are resonant: first-order theory is not controlled at this coupling."""


# ----------------------------------------------------------------------------------------------
# First-order perturbation theory (Eq. 3.2) — numba kernels
# ----------------------------------------------------------------------------------------------
# The pair kernels work on z-rows: maximal runs of members with consecutive indices on one lattice
# line along z (the cube in C order has N0² rows of N0). For a partner t, the members of a row see
# the displacement table at consecutive z offsets, so with the table in "SoA" order
# [6, 6, 2n0−1, 2n0−1, 2n0−1] each Λ_ab is one contiguous vector over the row and the inner loops
# over the row vectorize (SIMD lanes are different members s, never a reduction). Every output
# element is still accumulated sequentially over t (ascending), then m', inside one prange
# iteration: the results are bit-for-bit those of the plain per-pair loop, for any thread count.


@numba.njit(cache=True, nogil=True)
def _z_rows(pos):
    """Start indices ``[R + 1]`` of the z-rows of ``pos`` (same x, y; z and index increasing by 1)."""
    nb = pos.shape[0]
    starts = np.empty(nb + 1, dtype=np.int64)
    nr = 0
    for t in range(nb):
        if t == 0 or not (pos[t, 0] == pos[t - 1, 0] and pos[t, 1] == pos[t - 1, 1] and pos[t, 2] == pos[t - 1, 2] + 1):
            starts[nr] = t
            nr += 1
    starts[nr] = nb
    return starts[: nr + 1].copy()


@numba.njit(cache=True, nogil=True)
def _soa_table(table):
    """``out[a, b, ix, iy, iz] = table[ix, iy, iz, a, b]`` (float64 [K, K, m, m, m], serial)."""
    m = table.shape[0]
    nc = table.shape[3]
    out = np.empty((nc, nc, m, m, m))
    for ix in range(m):
        for iy in range(m):
            for iz in range(m):
                for a in range(nc):
                    for b in range(nc):
                        out[a, b, ix, iy, iz] = table[ix, iy, iz, a, b]
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _local_field_kernel_parallel(pos, table, n0, t0, out):
    """h^(s) = Σ_{s'≠s} Λ^(ss')·t0^(s') for every member.

    pos: int64 [N, 3]; table: float64 [2n0−1, 2n0−1, 2n0−1, K, K]; t0: float64 [N, K]; out: [N, K] (K = 6, or 9
    with the dipole channel).
    prange over z-rows; out[s] accumulated over s' ascending inside one iteration.
    """
    nb = pos.shape[0]
    nc = t0.shape[1]
    off = n0 - 1
    starts = _z_rows(pos)
    nr = starts.shape[0] - 1
    tab = _soa_table(table)
    for r in numba.prange(nr):
        s0 = starts[r]
        ls = starts[r + 1] - s0
        lsu = numba.uint64(ls)
        acc = np.zeros((nc, ls))
        xs = np.empty((nc, ls))
        for t in range(nb):
            ix = pos[s0, 0] - pos[t, 0] + off
            iy = pos[s0, 1] - pos[t, 1] + off
            iz0 = numba.uint64(pos[s0, 2] - pos[t, 2] + off)
            for a in range(nc):
                for j in range(lsu):
                    xs[a, j] = 0.0
                for b in range(nc):
                    tb = t0[t, b]
                    for j in range(lsu):
                        xs[a, j] += tab[a, b, ix, iy, iz0 + j] * tb
            jskip = t - s0
            if 0 <= jskip < ls:  # t is in this row: no self-interaction (Λ(0) = 0 anyway)
                for a in range(nc):
                    xs[a, jskip] = 0.0
            for a in range(nc):
                for j in range(lsu):
                    acc[a, j] += xs[a, j]
        for j in range(ls):
            for a in range(nc):
                out[s0 + j, a] = acc[a, j]


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _pair_kernel_parallel(pos, table, n0, g, energies, u, thr, delta, nres):
    """Two-body first-order correction to ⟨s,m|T_tot|0⟩ and resonance counts.

    For every single excitation (s, m ≥ 1) accumulate over (s' ≠ s, m' ≥ 1), with
    V = 2g·u^s_m·Λ^(ss')·u^{s'}_{m'} (u^s_m = ⟨m|T^(s)|0⟩, Mandel):
      δ(s,m) += V · u^{s'}_{m'} · [1/(E^s_m − E^{s'}_{m'}) − 1/(E^s_m + E^{s'}_{m'})].
    The first term is the single–single admixture of |s,m⟩; the second the pair admixture of the
    ground state. Resonant pairs (|V| > thr·|E^s_m − E^{s'}_{m'}|) skip the first term (they are
    treated exactly in their cluster) and are counted in nres[s]. A non-resonant pair with
    E^s_m = E^{s'}_{m'} has V = 0 and contributes 0.

    pos int64 [N,3]; table float64 [..,K,K]; energies float64 [N,n]; u float64 [N,n,K] (K = 6, or 9 with
    dipoles: V uses all K components, δ accumulates the stress part, the first 6);
    delta float64 [N,n,6] (output); nres int64 [N] (output). Memory beyond the inputs: one SoA copy
    of the table plus O(N0·n) per thread. prange over z-rows; each delta[s] accumulated over t
    ascending, then m', inside one iteration (bit-for-bit independent of the thread count).
    Raises ZeroDivisionError if two members have an excited level at exactly 0 (E_m + E_m' = 0).
    """
    nb = pos.shape[0]
    nc = u.shape[2]
    nl = energies.shape[1]
    ne = nl - 1
    off = n0 - 1
    n_zero = 0
    for t in range(nb):
        for mp in range(1, nl):
            if energies[t, mp] == 0.0:
                n_zero += 1
                break
    if n_zero >= 2:
        raise ZeroDivisionError("two members have an excitation at zero energy: E_m + E_m' = 0 in Eq. (3.2)")
    starts = _z_rows(pos)
    nr = starts.shape[0] - 1
    tab = _soa_table(table)
    twog = 2.0 * g
    for r in numba.prange(nr):
        s0 = starts[r]
        ls = starts[r + 1] - s0
        lsu = numba.uint64(ls)
        us = np.empty((ne, nc, ls))
        es = np.empty((ne, ls))
        for j in range(ls):
            for mq in range(ne):
                es[mq, j] = energies[s0 + j, mq + 1]
                for a in range(nc):
                    us[mq, a, j] = u[s0 + j, mq + 1, a]
        acc = np.zeros((ne, 6, ls))
        cnt = np.zeros(ls, dtype=np.int64)
        fb = np.empty(ls)
        rb = np.empty(ls, dtype=np.int64)
        xs = np.empty((nc, ls))
        for t in range(nb):
            ix = pos[s0, 0] - pos[t, 0] + off
            iy = pos[s0, 1] - pos[t, 1] + off
            iz0 = numba.uint64(pos[s0, 2] - pos[t, 2] + off)
            jskip = t - s0
            for mp in range(ne):
                ep = energies[t, mp + 1]
                # xs[a, j] = Σ_b Λ^(s_j t)_ab u^t_{m'b}, summed over b in order
                for a in range(nc):
                    for j in range(lsu):
                        xs[a, j] = 0.0
                    for b in range(nc):
                        ub = u[t, mp + 1, b]
                        for j in range(lsu):
                            xs[a, j] += tab[a, b, ix, iy, iz0 + j] * ub
                for mq in range(ne):
                    for j in range(lsu):
                        vv = 0.0
                        for a in range(nc):
                            vv += us[mq, a, j] * xs[a, j]
                        vv *= twog
                        em = es[mq, j]
                        diff = em - ep
                        coef = -1.0 / (em + ep)
                        res = abs(vv) > thr * abs(diff)
                        inv = 1.0 / (diff if diff != 0.0 else 1.0)
                        c = coef if res else coef + inv
                        fb[j] = vv * c if diff != 0.0 or res else 0.0
                        rb[j] = 1 if (res and vv != 0.0) else 0
                    if 0 <= jskip < ls:  # t is in this row: no self-interaction
                        fb[jskip] = 0.0
                        rb[jskip] = 0
                    for a in range(6):
                        ua = u[t, mp + 1, a]
                        for j in range(lsu):
                            acc[mq, a, j] += fb[j] * ua
                    for j in range(lsu):
                        cnt[j] += rb[j]
        for j in range(ls):
            for a in range(6):
                delta[s0 + j, 0, a] = 0.0
            for mq in range(ne):
                for a in range(6):
                    delta[s0 + j, mq + 1, a] = acc[mq, a, j]
            nres[s0 + j] = cnt[j]


@numba.njit(cache=True, nogil=True, parallel=True)
def _resonant_pairs_kernel_parallel(pos, table, n0, g, energies, u, thr, rows, offsets, out_i, out_j, out_v):
    """List the resonant pairs of the members in ``rows`` (second pass, only where nres > 0).

    Writes flat single-excitation indices i = s·(n−1) + (m−1) and j likewise, with V_ij, into the
    preallocated outputs: the pairs of rows[r] go to ``offsets[r]:offsets[r+1]`` (``offsets`` is the
    cumulative sum of nres[rows] from :func:`_pair_kernel`, which counts with the same arithmetic),
    in ascending (t, m, m') order, so the output is independent of the thread count. Returns the
    number written.
    """
    nb = pos.shape[0]
    nc = u.shape[2]
    nl = energies.shape[1]
    off = n0 - 1
    nrows = rows.shape[0]
    written = np.zeros(nrows, dtype=np.int64)
    for r in numba.prange(nrows):
        s = rows[r]
        k = offsets[r]
        k_end = offsets[r + 1]
        for t in range(nb):
            if t == s:
                continue
            ix = pos[s, 0] - pos[t, 0] + off
            iy = pos[s, 1] - pos[t, 1] + off
            iz = pos[s, 2] - pos[t, 2] + off
            for m in range(1, nl):
                for mp in range(1, nl):
                    vv = 0.0
                    for a in range(nc):
                        x = 0.0
                        for b in range(nc):
                            x += table[ix, iy, iz, a, b] * u[t, mp, b]
                        vv += u[s, m, a] * x
                    vv *= 2.0 * g
                    if vv != 0.0 and abs(vv) > thr * abs(energies[s, m] - energies[t, mp]) and k < k_end:
                        out_i[k] = s * (nl - 1) + (m - 1)
                        out_j[k] = t * (nl - 1) + (mp - 1)
                        out_v[k] = vv
                        k += 1
        written[r] = k - offsets[r]
    total = 0
    for r in range(nrows):
        total += written[r]
    return total


#: Below this much work (pairs × excited levels²) the kernels run their serial twins: waking the
#: thread pool costs ~0.5 ms per call, more than the whole sum for the small super blocks of an RG
#: step (N0 = 2..4). Serial and parallel twins give bit-identical results.
PARALLEL_MIN_WORK = 100_000


_local_field_kernel_serial = serial_twin(_local_field_kernel_parallel)
_pair_kernel_serial = serial_twin(_pair_kernel_parallel)
_resonant_pairs_kernel_serial = serial_twin(_resonant_pairs_kernel_parallel)


def _local_field_kernel(pos, table, n0, t0, out):
    """Dispatch to :func:`_local_field_kernel_parallel` or its serial twin by problem size."""
    nb = pos.shape[0]
    kernel = _local_field_kernel_parallel if nb * nb >= PARALLEL_MIN_WORK else _local_field_kernel_serial
    kernel(pos, table, n0, t0, out)


def _pair_kernel(pos, table, n0, g, energies, u, thr, delta, nres):
    """Dispatch to :func:`_pair_kernel_parallel` or its serial twin by problem size."""
    nb, nl = energies.shape
    work = nb * nb * max(1, (nl - 1) ** 2)
    kernel = _pair_kernel_parallel if work >= PARALLEL_MIN_WORK else _pair_kernel_serial
    kernel(pos, table, n0, g, energies, u, thr, delta, nres)


def _resonant_pairs_kernel(pos, table, n0, g, energies, u, thr, rows, offsets, out_i, out_j, out_v):
    """Dispatch to :func:`_resonant_pairs_kernel_parallel` or its serial twin by problem size."""
    nb, nl = energies.shape
    work = len(rows) * nb * max(1, (nl - 1) ** 2)
    kernel = _resonant_pairs_kernel_parallel if work >= PARALLEL_MIN_WORK else _resonant_pairs_kernel_serial
    return kernel(pos, table, n0, g, energies, u, thr, rows, offsets, out_i, out_j, out_v)


def _member_arrays(sb: SuperBlock, operators=None):
    """u [N, n, K] = ⟨m|X^(s)|0⟩ and t0 [N, K] = ⟨0|X^(s)|0⟩ of ``operators`` (default: the stress, K = 6)."""
    x = sb.stress if operators is None else operators
    u = np.ascontiguousarray(np.moveaxis(x[:, :, :, 0], 1, 2))
    return u, np.ascontiguousarray(u[:, 0, :])


def _kernel_table(sb: SuperBlock):
    """(table, g) for the kernels: the Λ table with g, or with dipoles the 9×9 table with g folded in."""
    if sb.dipoles is None:
        return sb.table, sb.coupling_g
    m = sb.table.shape[0]
    out = np.zeros((m, m, m, 9, 9))
    out[..., :6, :6] = sb.coupling_g * sb.table
    out[..., 6:, 6:] = sb.dipole_g * dipole_table(sb.n0)
    return out, 1.0


def _one_body_terms(sb: SuperBlock, vloc):
    """First-order one-body (mean-field) terms of Eq. (3.2) from vloc = ⟨m|2h^(s)·T^(s)|k⟩ [N, n, n].

    Returns ``omega [N, n]`` (first-order excitation energies of |s,m⟩ relative to the ground state;
    column 0 is 0), ``delta1 [N, n, 6]`` (one-body correction to ⟨s,m|T_tot|0⟩) and
    ``ground_t1 [N, 6]`` (each member's first-order change of ⟨0|T_tot|0⟩).
    """
    e = sb.energies
    st = sb.stress  # [N, 6, n, n]
    nl = sb.n_levels
    diag = np.einsum("smm->sm", vloc)
    omega = e + diag - diag[:, :1]
    u = np.moveaxis(st[:, :, :, 0], 1, 2)  # [N, n, 6]
    delta1 = np.zeros_like(u)
    t0 = u[:, 0, :]
    ground_t1 = np.zeros((sb.n_blocks, 6))
    for m in range(1, nl):
        em = e[:, m]
        # the ground admixes |s,m⟩ and |s,m⟩ admixes the ground: (V_m0/E_m)(t0 − T_mm)
        coeff = vloc[:, m, 0] / em
        delta1[:, m] += coeff[:, None] * (t0 - st[:, :, m, m])
        ground_t1 += -2.0 * coeff[:, None] * u[:, m]
        for k in range(1, nl):
            if k == m:
                continue
            ek = e[:, k]
            # |s,m⟩ admixes |s,k⟩ (which carries ⟨s,k|T|0⟩ = u_k)
            ck = np.where(np.abs(em - ek) > 0, vloc[:, k, m] / np.where(em == ek, 1.0, em - ek), 0.0)
            delta1[:, m] += ck[:, None] * u[:, k]
            # the ground admixes |s,k⟩ (which carries ⟨s,m|T|s,k⟩ = T_mk)
            delta1[:, m] += (-vloc[:, k, 0] / ek)[:, None] * st[:, :, m, k]
    return omega, delta1, ground_t1


def perturbative_amplitudes(sb: SuperBlock, thr: float = 0.1, *, use_kernels: bool = True):
    """Non-resonant first-order quantities of every single excitation.

    Steps: (1) the local field h^(s) = g Σ_{s'≠s} Λ^(ss')·⟨0|T^(s')|0⟩ (the one-body part of V acting
    on member s is 2h^(s)·T^(s)); (2) members with a one-body resonance — |⟨m|2h·T|k⟩| larger than
    ``thr`` times the level distance, including k = 0 (a small gap) — are diagonalized exactly in
    their local field ("dressed"); all others get the first-order one-body terms of Eq. (3.2);
    (3) the two-body sums over pairs (numba kernel) with the members' (dressed) levels.

    Returns ``omega [N, n]`` (excitation energies), ``amp [N, n, 6]`` (first-order ⟨s,m|T_tot|0⟩
    with resonant single–single admixtures excluded), ``nres [N]`` (resonant pairs per member),
    ``ground_t`` (first-order ⟨0|T_tot|0⟩), ``h`` (local fields [N, K], g included), and the
    effective members ``(energies, stress, dressed_mask, u_x)`` used for excited-state quantities
    (u_x [N, n, K] = ⟨m|X|0⟩ of all interacting components in the dressed basis).
    With the dipole channel, V couples X = (T, p) through blockdiag(gΛ, g_e μ̂) (Eq. 2.16, 5.1).
    ``use_kernels=False`` runs the plain NumPy reference of the same sums.
    """
    ops = sb.operators  # [N, K, n, n]: stress, then the dipole operator if present
    u, t0 = _member_arrays(sb)
    ux, tx0 = _member_arrays(sb, ops)
    nb, nl, nc = sb.n_blocks, sb.n_levels, sb.n_components
    if use_kernels:
        table, g_kernel = _kernel_table(sb)
        h = np.empty((nb, nc))
        _local_field_kernel(sb.positions, table, sb.n0, tx0, h)
        h *= g_kernel
    else:
        h = np.einsum("stab,tb->sa", sb.pair_matrix(), tx0)
    vloc = 2.0 * np.einsum("sa,samk->smk", h, ops)
    e_eff, x_eff, dressed = _dress_one_body(sb, vloc, thr)
    ux_eff = _member_arrays(sb, x_eff)[0]
    s_eff = np.ascontiguousarray(x_eff[:, :6])
    u_eff = ux_eff[:, :, :6]
    if use_kernels:
        delta2 = np.empty((nb, nl, 6))
        nres = np.empty(nb, dtype=np.int64)
        _pair_kernel(sb.positions, table, sb.n0, g_kernel, e_eff, ux_eff, thr, delta2, nres)
    else:
        delta2, nres = _pair_sums_reference(sb, e_eff, ux_eff, thr)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        omega, delta1, ground_t1 = _one_body_terms(sb, vloc)
    # dressed members: exact one-body treatment replaces the first-order one-body terms
    omega[dressed] = e_eff[dressed]
    delta1[dressed] = u_eff[dressed] - u[dressed]
    ground_t1[dressed] = u_eff[dressed, 0] - t0[dressed]
    amp = u + delta1 + delta2
    amp[:, 0, :] = 0.0
    ground_t = t0.sum(axis=0) + ground_t1.sum(axis=0)
    return omega, amp, nres, ground_t, h, (e_eff, s_eff, dressed, ux_eff)


def _dress_one_body(sb: SuperBlock, vloc, thr):
    """Exact diagonalization of H_0^(s) + 2h^(s)·T^(s) for members with a one-body resonance.

    Returns effective ``energies [N, n]`` (ground at 0), operators ``[N, K, n, n]`` (stress, then
    dipoles) in the dressed basis (unchanged for members that are not dressed) and the boolean mask of
    dressed members.
    """
    e = sb.energies
    gap = np.abs(e[:, :, None] - e[:, None, :])
    np.einsum("smm->sm", gap)[:] = np.inf
    gap[:, 0, 1:] = e[:, 1:]
    gap[:, 1:, 0] = e[:, 1:]
    off = np.abs(vloc).copy()
    np.einsum("smm->sm", off)[:] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(off > 0, off / gap, 0.0)
    # also dress members whose first-order level would cross the ground state (E_m + shift ≤ 0)
    shift = np.einsum("smm->sm", vloc) - vloc[:, :1, 0]
    crossing = np.any(e[:, 1:] + shift[:, 1:] <= 0, axis=1)
    dressed = np.any(ratio > thr, axis=(1, 2)) | crossing
    e_eff = e.copy()
    ops = sb.operators
    x_eff = ops.copy()
    for s in np.nonzero(dressed)[0]:
        w, c = np.linalg.eigh(np.diag(e[s]) + vloc[s])
        e_eff[s] = w - w[0]
        x_eff[s] = np.einsum("mi,amn,nj->aij", c, ops[s], c)
    return np.ascontiguousarray(e_eff), np.ascontiguousarray(x_eff), dressed


def _pair_sums_reference(sb: SuperBlock, energies, u, thr):
    """Plain NumPy reference for :func:`_pair_kernel` (O(N²) memory; small N only)."""
    lam = sb.pair_matrix()  # g·Λ (and g_e·μ̂), [N, N, K, K]
    e = energies[:, 1:]
    uu = u[:, 1:, :]  # all K components for V; the first 6 (stress) for δ
    v = 2.0 * np.einsum("sma,stab,tpb->smtp", uu, lam, uu)
    diff = e[:, :, None, None] - e[None, None, :, :]
    summ = e[:, :, None, None] + e[None, None, :, :]
    res = (np.abs(v) > thr * np.abs(diff)) & (v != 0)
    for s in range(sb.n_blocks):
        res[s, :, s, :] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(res | (diff == 0), 0.0, 1.0 / np.where(diff == 0, 1.0, diff)) - 1.0 / summ
    delta2 = np.zeros(u.shape[:2] + (6,))
    delta2[:, 1:, :] = np.einsum("smtp,smtp,tpa->sma", v, coef, uu[..., :6])
    nres = res.sum(axis=(1, 2, 3))
    return delta2, nres


def solve_perturbative(sb: SuperBlock, thr: float) -> Spectrum:
    """First-order Rayleigh–Schrödinger theory (Eq. 3.2 of [ZL]) for the ground state and every single
    excitation |s,m⟩ of a super block.

    Intermediate states are the ground state, the other single excitations and the double excitations
    that V admixes into the ground state. Single excitations with |V_pn| > ``thr``·|E_n − E_p| are
    grouped into resonant clusters (connected components) and diagonalized exactly inside each
    cluster (degenerate perturbation theory); members with a one-body resonance are dressed exactly
    in their local field. The O(N²) pair sums run in the numba kernels of this module.

    Parameters
    ----------
    sb : SuperBlock
        The finalized super block (coupling g of the current scale, lattice spacing 1).
    thr : float
        Resonance threshold in (0, 1).

    Returns
    -------
    Spectrum
        1 + N(n − 1) states: energies from the dressed ground state (E*), amplitudes ⟨0|T_tot|α⟩ (T*),
        diagnostics ``n_states``, ``ground_shift``, ``n_resonant_pairs``, ``n_resonant_clusters``,
        ``max_cluster_size``, ``resonant_fraction``, ``n_dressed_members``; populations follow
        DESIGN note 2. A :class:`ResonanceWarning` is issued when more than
        :data:`RESONANT_FRACTION_WARN` of the excitations are resonant.
    """
    nb, nl = sb.n_blocks, sb.n_levels
    omega, amp, nres, ground_t, h, members = perturbative_amplitudes(sb, thr)
    e_eff, s_eff, dressed, ux_eff = members
    ns = nb * (nl - 1)
    flat_omega = omega[:, 1:].reshape(ns)
    flat_amp = amp[:, 1:, :].reshape(ns, 6)
    # Resonant two-body pairs (kernel, second pass over the members that have any).
    pi, pj, pv = [], [], []
    rows = np.nonzero(nres)[0].astype(np.int64)
    n_two_body = int(nres.sum())
    if n_two_body:
        oi = np.empty(n_two_body, dtype=np.int64)
        oj = np.empty(n_two_body, dtype=np.int64)
        ov = np.empty(n_two_body)
        offsets = np.concatenate([[0], np.cumsum(nres[rows])]).astype(np.int64)
        table, g_kernel = _kernel_table(sb)
        k = _resonant_pairs_kernel(
            sb.positions, table, sb.n0, g_kernel, e_eff, ux_eff, thr, rows, offsets, oi, oj, ov
        )
        pi.append(oi[:k]), pj.append(oj[:k]), pv.append(ov[:k])
    # Population weights [1 + ns, N] (docs/DESIGN.md note 2), sparse: a state outside any cluster has
    # weight 1 on its own member; a cluster state |α⟩ = Σ_l c_lα |l⟩ has Σ_l c_lα² on the members of
    # its components. Dense this would be O(N²) memory (8 GiB at N0 = 32).
    state_member = np.repeat(np.arange(nb), nl - 1)
    in_any_cluster = np.zeros(ns, dtype=bool)
    pw_i, pw_j, pw_v = [], [], []
    energies_flat = flat_omega.copy()
    amps_flat = flat_amp.copy()
    n_pairs = 0
    n_clusters = 0
    max_cluster = 1 if ns else 0
    in_cluster = 0
    rot_members: list[tuple[np.ndarray, np.ndarray]] = []  # (state indices, eigenvectors)
    if pi:
        i_all = np.concatenate(pi)
        j_all = np.concatenate(pj)
        v_all = np.concatenate(pv)
        # keep each unordered pair once
        a_idx = np.minimum(i_all, j_all)
        b_idx = np.maximum(i_all, j_all)
        key = a_idx * ns + b_idx
        _, first = np.unique(key, return_index=True)
        a_idx, b_idx, v_all = a_idx[first], b_idx[first], v_all[first]
        n_pairs = len(a_idx)
        graph = scipy.sparse.coo_matrix((np.ones(n_pairs), (a_idx, b_idx)), shape=(ns, ns))
        n_comp, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
        sizes = np.bincount(labels, minlength=n_comp)
        state_order = np.argsort(labels, kind="stable")
        state_start = np.concatenate([[0], np.cumsum(sizes)])
        pair_order = np.argsort(labels[a_idx], kind="stable")
        pair_start = np.concatenate([[0], np.cumsum(np.bincount(labels[a_idx], minlength=n_comp))])
        for c in np.nonzero(sizes > 1)[0]:
            members = np.sort(state_order[state_start[c]:state_start[c + 1]])
            n_clusters += 1
            in_cluster += len(members)
            max_cluster = max(max_cluster, len(members))
            hc = np.diag(flat_omega[members])
            sel = pair_order[pair_start[c]:pair_start[c + 1]]
            ia = np.searchsorted(members, a_idx[sel])
            ib = np.searchsorted(members, b_idx[sel])
            hc[ia, ib] = v_all[sel]
            hc[ib, ia] = v_all[sel]
            ev, vec = np.linalg.eigh(hc)
            energies_flat[members] = ev
            amps_flat[members] = vec.T @ flat_amp[members]
            cols, col_of = np.unique(state_member[members], return_inverse=True)
            w_old = np.zeros((len(members), len(cols)))
            w_old[np.arange(len(members)), col_of] = 1.0
            pw_i.append(np.repeat(members, len(cols)))
            pw_j.append(np.tile(cols, len(members)))
            pw_v.append(((vec.T**2) @ w_old).ravel())
            in_any_cluster[members] = True
            rot_members.append((members, vec))
    frac = in_cluster / ns if ns else 0.0
    if frac > RESONANT_FRACTION_WARN:
        warnings.warn(
            f"{in_cluster} of {ns} single excitations ({100 * frac:.0f}%) are in resonant clusters at "
            f"g = {sb.coupling_g:g}: the coupling is too strong for first-order theory",
            ResonanceWarning,
            stacklevel=3,
        )
    order = np.argsort(energies_flat, kind="stable")
    energies = np.concatenate([[0.0], energies_flat[order]])
    flat_label = np.arange(ns)
    for members, vec in rot_members:
        flat_label[members] = members[np.argmax(vec**2, axis=0)]
    labels = None  # [K, N] dense: only for small super blocks (it is O(N²) memory)
    if (1 + ns) * nb <= PERTURBATIVE_LABELS_MAX:
        labels = np.zeros((1 + ns, nb), dtype=np.int64)
        lab = flat_label[order]
        labels[1 + np.arange(ns), lab // (nl - 1)] = lab % (nl - 1) + 1
    amp0 = np.concatenate([ground_t[None, :], amps_flat[order]])
    plain = np.nonzero(~in_any_cluster)[0]
    pw_i.append(plain), pw_j.append(state_member[plain]), pw_v.append(np.ones(len(plain)))
    sorted_row = np.empty(ns, dtype=np.int64)
    sorted_row[order] = np.arange(ns)
    pw_i = np.concatenate(pw_i)
    pop_w = scipy.sparse.csr_matrix(
        (np.concatenate(pw_v), (1 + sorted_row[pw_i], np.concatenate(pw_j))), shape=(1 + ns, nb)
    )
    # unitary map from sorted states to flat single-excitation basis (for excited-state elements)
    basis_of = _BasisMap(ns, order, rot_members)
    def excited_stress(idx):
        return _excited_stress_block(s_eff, idx, basis_of, ground_t, amp0)

    diag = {
        "n_states": int(1 + ns),
        "ground_shift": float(np.sum(_member_arrays(sb, sb.operators)[1] * h)),
        "n_resonant_pairs": int(n_pairs),
        "n_resonant_clusters": int(n_clusters),
        "max_cluster_size": int(max_cluster),
        "resonant_fraction": float(frac),
        "n_dressed_members": int(np.count_nonzero(dressed)),
    }
    return Spectrum(
        energies=energies,
        amp0=amp0,
        method="perturbative",
        diagnostics=diag,
        _sb=sb,
        _excited_stress=excited_stress,
        _pop_weights=pop_w,
        labels=labels,
        _members=(e_eff, s_eff),
    )


class _BasisMap:
    """Coefficients of sorted perturbative states in the flat single-excitation basis."""

    def __init__(self, ns, order, clusters):
        self.order = order
        self.cluster_of = {}
        for members, vec in clusters:
            for col, st in enumerate(members):
                self.cluster_of[int(st)] = (members, vec[:, col])

    def coefficients(self, sorted_index: int):
        flat = int(self.order[sorted_index])
        if flat in self.cluster_of:
            members, col = self.cluster_of[flat]
            return members, col
        return np.array([flat]), np.array([1.0])


def _excited_stress_block(member_stress, idx, basis_of, ground_t, amp0):
    """⟨α|T_tot|β⟩ among kept states: ground row/column at first order, excited–excited at zeroth.

    Excited–excited elements in the flat basis: ⟨s,m|T|s,k⟩ = T^s_mk (m ≠ k),
    ⟨s,m|T|s,m⟩ = Σ_{s''} t0^{s''} − t0^s + T^s_mm, and 0 between different members.
    """
    nl = member_stress.shape[-1]
    total_t0 = member_stress[:, :, 0, 0].sum(axis=0)
    k = len(idx)
    out = np.zeros((6, k, k))
    if idx[0] != 0:
        raise InputError("stress_block: the state list must start with the ground state (index 0)")
    out[:, 0, 0] = ground_t
    for i in range(1, k):
        out[:, 0, i] = amp0[idx[i]]
        out[:, i, 0] = amp0[idx[i]]
    coeffs = [basis_of.coefficients(int(x) - 1) for x in idx[1:]]
    for i in range(1, k):
        fi, ci = coeffs[i - 1]
        for j in range(i, k):
            fj, cj = coeffs[j - 1]
            acc = np.zeros(6)
            for a_state, ca in zip(fi, ci):
                s, m = divmod(int(a_state), nl - 1)
                m += 1
                for b_state, cb in zip(fj, cj):
                    t, mp = divmod(int(b_state), nl - 1)
                    mp += 1
                    if s != t:
                        continue
                    if m == mp:
                        elem = total_t0 - member_stress[s, :, 0, 0] + member_stress[s, :, m, m]
                    else:
                        elem = member_stress[s, :, m, mp]
                    acc += ca * cb * elem
            out[:, i, j] = acc
            out[:, j, i] = acc
    return out
