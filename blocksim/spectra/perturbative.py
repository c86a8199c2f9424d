"""First-order perturbation theory (Eq. 3.2 of [ZL]) for large super blocks: numba kernels and solver.

Eq. (3.2): |n^sup⟩ = |n⟩ + Σ_{p≠n} ⟨p|V|n⟩/(E_n − E_p)|p⟩, E_n^sup = E_n + ⟨n|V|n⟩, applied in the
product basis to the ground state and every single excitation |s,m⟩. This module computes the
ground row: the energies, ⟨α|T_tot|0⟩ (including the pair admixture of the ground state) and
⟨0|T_tot|0⟩. The rest of the kept block, ⟨α̃|T_tot|β̃⟩ = Z + Y(α, β) + Y(β, α) with
Y(α, β) = Σ_x ⟨α|T_tot|x⟩⟨x|V|β⟩/(E_β − E_x) over the ground, singles and doubles, is written out
term by term in :mod:`blocksim.spectra.excited`. Resonant clusters (single–single, and single–double
|t,p⟩ ↔ |t,q; s,m⟩ when E^t_p ≈ E^t_q + E^s_m) are diagonalized exactly; members with a one-body
resonance are dressed exactly in their local field. O(N n²) memory beyond the displacement table.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from .._numba import serial_twin
from ..errors import InputError
from .excited import (FirstOrderContext, double_amplitude, double_energy, node_element, rotate_operators,
                      single_double_resonances)
from .spectrum import Spectrum, carrier_weights, eigh_pair, rotate_rows
from .superblock import SuperBlock, dipole_table

__all__ = ["PERTURBATIVE_LABELS_MAX", "PERTURBATIVE_MAX_CLUSTER", "RESONANT_FRACTION_WARN", "ResonanceWarning",
           "perturbative_amplitudes", "solve_perturbative"]

#: The perturbative solver fills ``Spectrum.labels`` ([K, N] int64, O(N²) memory) only up to this
#: many entries (32 MB); above it ``labels`` is None (docs/performance.md).
PERTURBATIVE_LABELS_MAX = 4_000_000
#: Warn when more than this fraction of single excitations sits in resonant clusters.
RESONANT_FRACTION_WARN = 0.5
#: Largest resonant cluster (basis nodes) the solver diagonalizes. Beyond it the clusters percolate (first-order
#: theory does not apply) and the dense eigh alone would take minutes to hours and gigabytes: InputError.
PERTURBATIVE_MAX_CLUSTER = 8192


class ResonanceWarning(UserWarning):
    """Most single excitations are in resonant clusters: first-order theory covers only the rest.

    Raised at strong coupling, and also at weak coupling when a member is soft (a gap below the
    field that its neighbours' excitations exert on it): every excitation then shares its weight
    with "itself plus the soft member flipped" (a single–double resonance).
    """


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
    effective members ``(energies, stress, dressed_mask, u_x, x, u1)`` used for excited-state
    quantities (u_x [N, n, K] = ⟨m|X|0⟩ of all interacting components in the dressed basis; x
    [N, K, n, n] the operators in that basis; u1 [N, n, n] the off-diagonal one-body perturbation
    2h·X of the members that are not dressed, zero for dressed ones).
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
    u1 = vloc.copy()
    np.einsum("smm->sm", u1)[:] = 0.0
    u1[dressed] = 0.0
    return omega, amp, nres, ground_t, h, (e_eff, s_eff, dressed, ux_eff, x_eff, u1)


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
        w, c = eigh_pair(np.diag(e[s]) + vloc[s])
        e_eff[s] = w - w[0]
        rotate_operators(c[None], ops[s][None], x_eff[s][None])
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


def _resonant_single_pairs(sb: SuperBlock, e_eff, ux_eff, thr, nres):
    """Resonant single–single pairs (each unordered pair once): ``(a [M], b [M], v [M])``, flat indices."""
    rows = np.nonzero(nres)[0].astype(np.int64)
    n_two_body = int(nres.sum())
    if not n_two_body:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    oi = np.empty(n_two_body, dtype=np.int64)
    oj = np.empty(n_two_body, dtype=np.int64)
    ov = np.empty(n_two_body)
    offsets = np.concatenate([[0], np.cumsum(nres[rows])]).astype(np.int64)
    table, g_kernel = _kernel_table(sb)
    k = _resonant_pairs_kernel(sb.positions, table, sb.n0, g_kernel, e_eff, ux_eff, thr, rows, offsets, oi, oj, ov)
    i_all, j_all, v_all = oi[:k], oj[:k], ov[:k]
    a_idx = np.minimum(i_all, j_all)
    b_idx = np.maximum(i_all, j_all)
    ns = sb.n_blocks * (sb.n_levels - 1)
    _, first = np.unique(a_idx * ns + b_idx, return_index=True)
    return a_idx[first], b_idx[first], v_all[first]


def _resonant_doubles(ctx: FirstOrderContext, ns: int):
    """Single–double resonances as graph edges: ``(doubles [D, 4], a [M], b [M], v [M])``.

    Doubles are canonical ``(s, k, t, p)`` with s < t and get node indices ns + row.
    """
    single, double, v = single_double_resonances(ctx)
    if single.size == 0:
        return np.zeros((0, 4), dtype=np.int64), single, single.copy(), v
    swap = double[:, 0] > double[:, 2]
    canon = np.where(swap[:, None], double[:, [2, 3, 0, 1]], double)
    doubles, inverse = np.unique(canon, axis=0, return_inverse=True)
    return doubles, single, ns + inverse.ravel(), v


def _node_occupation(nb: int, nl: int, doubles) -> scipy.sparse.csr_matrix:
    """Member occupation of each basis node ``[ns + D, N]``: 1 on a single's member, ½ on each of a double's."""
    ns = nb * (nl - 1)
    rows = np.concatenate([np.arange(ns), ns + np.repeat(np.arange(len(doubles)), 2)])
    cols = np.concatenate([np.repeat(np.arange(nb), nl - 1), doubles[:, [0, 2]].ravel()])
    vals = np.concatenate([np.ones(ns), np.full(2 * len(doubles), 0.5)])
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(ns + len(doubles), nb))


def solve_perturbative(sb: SuperBlock, thr: float) -> Spectrum:
    """First-order spectrum of a super block (Eq. 3.2 of [ZL]) with resonant clusters solved exactly.

    Parameters
    ----------
    sb : SuperBlock
        The finalized super block.
    thr : float
        Resonance threshold: a coupling V between two basis states is resonant when
        |V| > thr·|ΔE| (single–single pairs, and single–double pairs |t,p⟩ ↔ |t,q; s,m⟩).

    Returns
    -------
    Spectrum
        States: the ground state, every single excitation |s,m⟩ and every double excitation that
        is resonant with a single one (inside its cluster); ``amp0`` is first order in g.
        ``stress_block`` gives the kept block to first order (:mod:`blocksim.spectra.excited`).
        Diagnostics: ``n_states``, ``ground_shift``, ``n_resonant_pairs`` (single–single),
        ``n_resonant_single_double``, ``n_resonant_clusters``, ``max_cluster_size``,
        ``resonant_fraction`` (single excitations inside clusters), ``n_dressed_members``.
    """
    nb, nl = sb.n_blocks, sb.n_levels
    omega, amp, nres, ground_t, h, members = perturbative_amplitudes(sb, thr)
    e_eff, s_eff, dressed, ux_eff, x_eff, u1 = members
    table, g_kernel = _kernel_table(sb)
    ctx = FirstOrderContext(e_eff, x_eff, u1, table, g_kernel, sb.positions, sb.n0, thr, ground_t)
    ns = nb * (nl - 1)
    # Basis nodes: singles 0..ns−1 (s·(n−1) + m − 1), then the doubles resonant with a single.
    ss_a, ss_b, ss_v = _resonant_single_pairs(sb, e_eff, ux_eff, thr, nres)
    doubles, sd_a, sd_b, sd_v = _resonant_doubles(ctx, ns)
    nd = len(doubles)
    n_nodes = ns + nd
    node_energy = np.concatenate([omega[:, 1:].reshape(ns),
                                  [double_energy(ctx, omega, *d) for d in doubles]])
    node_amp = np.concatenate([amp[:, 1:, :].reshape(ns, 6),
                               np.array([double_amplitude(ctx, *d) for d in doubles]).reshape(nd, 6)])
    occupation = _node_occupation(nb, nl, doubles)
    energies_nodes = node_energy.copy()
    amps_nodes = node_amp.copy()
    edge_a = np.concatenate([ss_a, sd_a])
    edge_b = np.concatenate([ss_b, sd_b])
    edge_v = np.concatenate([ss_v, sd_v])
    in_any_cluster = np.zeros(n_nodes, dtype=bool)
    in_double_cluster = np.zeros(n_nodes, dtype=bool)  # clusters that hold a double
    pw_i, pw_j, pw_v = [], [], []
    n_clusters = 0
    max_cluster = 1 if ns else 0
    in_cluster = 0
    rot_members: list[tuple[np.ndarray, np.ndarray]] = []  # (node indices, eigenvectors)
    if edge_a.size:
        graph = scipy.sparse.coo_matrix((np.ones(edge_a.size), (edge_a, edge_b)), shape=(n_nodes, n_nodes))
        n_comp, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
        sizes = np.bincount(comp, minlength=n_comp)
        node_order = np.argsort(comp, kind="stable")
        node_start = np.concatenate([[0], np.cumsum(sizes)])
        edge_order = np.argsort(comp[edge_a], kind="stable")
        edge_start = np.concatenate([[0], np.cumsum(np.bincount(comp[edge_a], minlength=n_comp))])
        if sizes.max() > PERTURBATIVE_MAX_CLUSTER:
            raise InputError(
                f"resonant cluster = {int(sizes.max())} basis states at g = {sb.coupling_g:g}, resonance threshold = {thr:g} "
                f"(N = {nb}): must be ≤ {PERTURBATIVE_MAX_CLUSTER}; the resonances percolate and first-order theory does "
                "not apply: lower the coupling or the threshold")
        for c in np.nonzero(sizes > 1)[0]:
            nodes = np.sort(node_order[node_start[c]:node_start[c + 1]])
            n_clusters += 1
            in_cluster += int(np.count_nonzero(nodes < ns))
            max_cluster = max(max_cluster, len(nodes))
            hc = np.diag(node_energy[nodes])
            sel = edge_order[edge_start[c]:edge_start[c + 1]]
            ia = np.searchsorted(nodes, edge_a[sel])
            ib = np.searchsorted(nodes, edge_b[sel])
            hc[ia, ib] = edge_v[sel]
            hc[ib, ia] = edge_v[sel]
            ev, vec = eigh_pair(hc)
            energies_nodes[nodes] = ev
            amps_nodes[nodes] = rotate_rows(vec.T[None], node_amp[nodes][None], np.empty((1, len(nodes), 6)))[0]
            sub = occupation[nodes]
            cols = np.unique(sub.indices)  # the members this cluster touches (not all N columns)
            occ = sub[:, cols].toarray()
            wts = carrier_weights(vec.T**2, occ, nodes < ns).ravel()
            stored = wts != 0.0  # only positive weights are stored (the batch sums rows the same way)
            pw_i.append(np.repeat(nodes, len(cols))[stored])
            pw_j.append(np.tile(cols, len(nodes))[stored])
            pw_v.append(wts[stored])
            in_any_cluster[nodes] = True
            in_double_cluster[nodes] = bool(np.any(nodes >= ns))
            rot_members.append((nodes, vec))
    frac = in_cluster / ns if ns else 0.0
    if frac > RESONANT_FRACTION_WARN:
        warnings.warn(
            f"{in_cluster} of {ns} single excitations ({100 * frac:.0f}%) are in resonant clusters at "
            f"g = {sb.coupling_g:g} (single–single or single–double): first-order theory covers only the rest; "
            "the clusters are diagonalized exactly",
            ResonanceWarning,
            stacklevel=3,
        )
    order = np.argsort(energies_nodes, kind="stable")
    energies = np.concatenate([[0.0], energies_nodes[order]])
    node_label = np.arange(n_nodes)
    for nodes, vec in rot_members:
        node_label[nodes] = nodes[np.argmax(vec**2, axis=0)]
    labels = None  # [K, N] dense: only for small super blocks (it is O(N²) memory)
    if (1 + n_nodes) * nb <= PERTURBATIVE_LABELS_MAX:
        labels = np.zeros((1 + n_nodes, nb), dtype=np.int64)
        lab = node_label[order]
        single = lab < ns
        rows = 1 + np.arange(n_nodes)
        labels[rows[single], lab[single] // (nl - 1)] = lab[single] % (nl - 1) + 1
        for row, j in zip(rows[~single], lab[~single]):
            s, k, t, p = doubles[j - ns]
            labels[row, s], labels[row, t] = k, p
    amp0 = np.concatenate([ground_t[None, :], amps_nodes[order]])
    sorted_row = np.empty(n_nodes, dtype=np.int64)
    sorted_row[order] = np.arange(n_nodes)
    plain = np.nonzero(~in_any_cluster)[0]  # singles only: every double is in a cluster
    pw_i.append(plain), pw_j.append(plain // (nl - 1)), pw_v.append(np.ones(len(plain)))
    pw_i = np.concatenate(pw_i)
    pop_w = scipy.sparse.csr_matrix(
        (np.concatenate(pw_v), (1 + sorted_row[pw_i], np.concatenate(pw_j))), shape=(1 + n_nodes, nb)
    )
    basis = _BasisMap(order, rot_members, nl, doubles)

    def excited_stress(idx):
        return _excited_stress_block(ctx, idx, basis, amp0)

    diag = {
        "n_states": int(1 + n_nodes),
        "ground_shift": float(np.sum(_member_arrays(sb, sb.operators)[1] * h)),
        "n_resonant_pairs": int(ss_a.size),
        "n_resonant_single_double": int(sd_a.size),
        "n_resonant_clusters": int(n_clusters),
        "max_cluster_size": int(max_cluster),
        "resonant_fraction": float(frac),
        "n_dressed_members": int(np.count_nonzero(dressed)),
    }
    # resonant bookkeeping (for splitting the response into resonant and non-resonant parts)
    single_res = in_any_cluster[:ns].reshape(nb, nl - 1) | dressed[:, None]
    node_res = in_any_cluster.copy()
    node_res[:ns] |= single_res.ravel()
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
        resonant_states=np.concatenate([[False], node_res[order]]),
        resonant_singles=single_res,
        dressed_members=np.asarray(dressed, dtype=bool).copy(),
        cluster_states=np.concatenate([[False], in_any_cluster[order]]),
        cluster_singles=in_any_cluster[:ns].reshape(nb, nl - 1).copy(),
        double_cluster_states=np.concatenate([[False], in_double_cluster[order]]),
        double_cluster_singles=in_double_cluster[:ns].reshape(nb, nl - 1).copy(),
    )


class _BasisMap:
    """Coefficients of the sorted perturbative states on the basis nodes (singles, resonant doubles)."""

    def __init__(self, order, clusters, n_levels, doubles):
        self.order = order
        self.n_levels = n_levels
        self.doubles = doubles
        self.ns = len(order) - len(doubles)
        self.cluster_of = {}
        for nodes, vec in clusters:
            for col, st in enumerate(nodes):
                self.cluster_of[int(st)] = (nodes, vec[:, col])

    def coefficients(self, sorted_index: int):
        """``(nodes, coefficients)`` of the excited state ``sorted_index`` (0 = lowest excitation)."""
        node = int(self.order[sorted_index])
        if node in self.cluster_of:
            return self.cluster_of[node]
        return np.array([node]), np.array([1.0])

    def node(self, j: int) -> tuple:
        """``(s, m)`` of a single, ``(s, k, t, p)`` of a double."""
        if j < self.ns:
            s, m = divmod(int(j), self.n_levels - 1)
            return (s, m + 1)
        return tuple(int(v) for v in self.doubles[j - self.ns])


@numba.njit(cache=True, nogil=True)
def _contract_block(rows, vals, offsets, elem, out):
    """``out[:, i, j] = Σ_a Σ_b c_ia c_jb elem[a, b]`` for 1 ≤ i ≤ j (and its mirror), summed a-major.

    State i (1-based in ``out``) has coefficients ``vals[offsets[i−1]:offsets[i]]`` on the support rows
    ``rows[...]`` of ``elem`` [n_support, n_support, 6] (⟨a|T_tot|b⟩). The order of the sums is that of
    the batched kernel (:mod:`blocksim.spectra.batch`), so both paths agree bit for bit.
    """
    k = offsets.shape[0]
    acc = np.empty(6)
    for i in range(1, k):
        for j in range(i, k):
            acc[:] = 0.0
            for a in range(offsets[i - 1], offsets[i]):
                for b in range(offsets[j - 1], offsets[j]):
                    f = vals[a] * vals[b]
                    for x in range(6):
                        acc[x] += f * elem[rows[a], rows[b], x]
            for x in range(6):
                out[x, i, j] = acc[x]
                out[x, j, i] = acc[x]


def _excited_stress_block(ctx: FirstOrderContext, idx, basis: _BasisMap, amp0):
    """⟨α|T_tot|β⟩ ``[6, k, k]`` among kept states, first order in g (:mod:`blocksim.spectra.excited`).

    Ground row and column: ⟨0|T_tot|0⟩ and ⟨α|T_tot|0⟩ of Eq. (3.2) (``amp0``). Excited–excited:
    Σ_ij a_i b_j ⟨i|T_tot|j⟩ over the basis nodes of the two states (cluster eigenvectors or a
    single node), with :func:`blocksim.spectra.excited.node_element`.
    """
    k = len(idx)
    if idx[0] != 0:
        raise InputError("stress_block: the state list must start with the ground state (index 0)")
    out = np.zeros((6, k, k))
    out[:, 0, 0] = ctx.ground_t
    for i in range(1, k):
        out[:, 0, i] = amp0[idx[i]]
        out[:, i, 0] = amp0[idx[i]]
    coeffs = [basis.coefficients(int(x) - 1) for x in idx[1:]]
    if k == 1:
        return out
    # every basis node a kept state touches, the state coefficients on them, and ⟨a|T_tot|b⟩ between
    # them (one node_element per unordered pair); the block is then one contraction C·E·Cᵀ
    support = np.unique(np.concatenate([np.asarray(f, dtype=np.int64) for f, _ in coeffs]))
    where = {int(a): r for r, a in enumerate(support)}
    rows = np.array([where[int(a)] for f, _ in coeffs for a in f], dtype=np.int64)
    vals = np.concatenate([np.asarray(c, dtype=float) for _, c in coeffs])
    offsets = np.cumsum([0] + [len(f) for f, _ in coeffs]).astype(np.int64)
    nodes = [basis.node(int(a)) for a in support]
    elem = np.zeros((support.size, support.size, 6))
    for r in range(support.size):
        for q in range(r, support.size):
            elem[r, q] = node_element(ctx, nodes[r], nodes[q])
            elem[q, r] = elem[r, q]
    _contract_block(rows, vals, offsets, elem, out)
    return out
