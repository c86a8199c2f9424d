"""Many small super blocks at once: the batched first-order solver of an RG step.

An RG step solves thousands of super blocks of N0³ ≤ 64 members (:data:`BATCH_MAX_N0`), where the
per-super-block path (:func:`blocksim.spectra.solve` + :meth:`Spectrum.truncate` +
:meth:`Spectrum.transitions`) spends milliseconds of NumPy/SciPy orchestration on microseconds of
arithmetic. :func:`solve_batch` takes the members and rotations of all super blocks as arrays and
does the whole first-order solver (Eq. 3.2 of [ZL], :mod:`~blocksim.spectra.perturbative`,
:mod:`~blocksim.spectra.excited`) for all of them in three numba kernels with stacked NumPy calls
between them:

* stage A (:func:`_stage_a`): rotation of the members (Mandel Q(R)·T, symmetrized), local fields,
  the one-body perturbation 2h·T and the dressing test; then the dressed members of all super
  blocks are diagonalized in their local fields (:func:`_dress`, one numba loop over
  :func:`~blocksim.spectra.spectrum.eigh_pair`, the per-member path's eigen-solver);
* stage B (:func:`_stage_b`): the pair sums of the ground-row amplitudes, the one-body terms, the
  first-order ⟨0|T|0⟩, the resonant single–single pairs and single–double pairs, the doubles and
  the clusters (union–find); then the doubles' energies and amplitudes (:func:`_doubles`) and the
  clusters of all super blocks (:func:`_clusters`, one numba kernel with the same ``eigh_pair`` and the
  shared sums of :mod:`~blocksim.spectra.spectrum`);
* stage C (:func:`_stage_c`): the stable sort of the levels, the truncation (lowest ``n_keep`` or an
  energy window), the kept stress block to first order (the same
  :func:`~blocksim.spectra.excited._y_kernel`) and the truncation diagnostics; the populations of
  the transitions (DESIGN note 2) follow in NumPy.

Every kernel is ``prange`` over super blocks, and one super block is computed sequentially inside one
iteration, so the results do not depend on the thread count (serial twins below
:data:`PARALLEL_MIN_SUPERBLOCKS`). Every operation is done in the order the per-super-block path does
it (sequential sums where it loops or reduces along an outer axis, NumPy's pairwise sum where it
calls ``np.sum``, scipy's row sums, and the same numba helpers for eigenpairs and the small matrix
products), so the results are **bit-for-bit** those of the per-super-block path;
tests/test_batch.py checks every output array with ``assert_array_equal`` on weak, strong, dressed,
resonant and windowed cases, n = 2, 3, 4 and N0 = 2, 3.

The kernel arrays hold 4·N(n−1) resonant single–single pairs, 4·N(n−1) single–double pairs and
2·N(n−1) doubles per super block. The super blocks that overflow them (most of them at g ≳ 0.1) are
solved again by the same kernels in sub-batches with the full limits (:func:`_limits`: every pair and
double at N0 = 2, at most 8× the defaults). A super block beyond those (a cluster touching 9 or more
members, an excited level at 0, a non-finite result) or within a relative :data:`FALLBACK_MARGIN` of
a resonance or dressing threshold is solved by the per-super-block path itself (``fallback_reason``,
:data:`REASONS`): identical by construction.

:func:`solve_batch_reference` is the slow, obvious reference (STYLE 4): the per-super-block loop with
the same output. ``solver.batched = false`` makes the RG step use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .._numba import serial_twin
from ..errors import InputError
from ..model.tensors import MANDEL_INDEX, MANDEL_WEIGHT
from ..response import Transitions, boltzmann
from .excited import _y_kernel, double_amplitude_scratch, quadratic_form, rotate_operators
from .perturbative import RESONANT_FRACTION_WARN
from .superblock import assemble_superblock
from .spectrum import carrier_weights_into, eigh_pair, rotate_rows

__all__ = ["BATCH_MAX_N0", "FALLBACK_MARGIN", "BatchSolution", "solve_batch", "solve_batch_reference"]

#: Largest lattice edge the batched kernel accepts (N0³ = 64 members).
BATCH_MAX_N0 = 4
#: The kernel's resonance tests use thr·(1 − FALLBACK_MARGIN): borderline super blocks fall back.
FALLBACK_MARGIN = 1e-9
#: Fallback reasons (``BatchSolution.fallback_reason``): 0 = common path.
REASONS = ("none", "within rounding of a resonance or dressing test", "resonant clusters beyond the kernels' limits",
           "single-double pairs or doubles beyond the kernels' limits", "excited level at 0", "non-finite result")
_OK, _BORDER, _RES_SS, _RES_SD, _ZERO, _NONFINITE = range(6)

#: Solver diagnostics of :func:`blocksim.spectra.solve` ("perturbative"), in this order.
SOLVER_DIAGNOSTICS = ("n_states", "ground_shift", "n_resonant_pairs", "n_resonant_single_double",
                      "n_resonant_clusters", "max_cluster_size", "resonant_fraction", "n_dressed_members")


@dataclass(frozen=True)
class BatchSolution:
    """Solved and truncated super blocks of one batch: the arrays an RG step consumes.

    Per super block j (P rows, in order):

    Attributes
    ----------
    energies : ndarray [P, n_keep]
        Kept levels (as :meth:`Spectrum.truncate` returns them; ground 0), units E*.
    stress : ndarray [P, 6, n_keep, n_keep]
        Kept block ⟨α|T_tot|β⟩ (Mandel), first order in g, units T*.
    weight_kept, lowest_excluded_energy : ndarray [P]
        The truncation diagnostics of :meth:`Spectrum.truncate` (E* for the second).
    double_in_window : ndarray [P] bool
        Whether the lowest double excitation lies below the highest kept level.
    diagnostics : dict
        Solver diagnostics (:data:`SOLVER_DIAGNOSTICS`) → float64 [P].
    lead : ndarray [P] int64
        Member whose excitation dominates the lowest excited state (``Spectrum.labels[1]``).
    excitations, excitation_offsets : ndarray [E], int64 [P + 1]
        ``Spectrum.energies[1:]`` of super block j at ``excitations[excitation_offsets[j]:excitation_offsets[j + 1]]`` (E*).
    omega, amp, population, temperatures, transition_offsets : ndarray [M], [M, 6], [n_T, M], [n_T], int64 [P + 1]
        ``Spectrum.transitions(temperatures)`` of all super blocks, joined; super block j owns the
        columns ``transition_offsets[j]:transition_offsets[j + 1]`` (see :meth:`transitions`).
    fallback_reason : ndarray [P] int64
        0: the batched common path; else the index in :data:`REASONS` of why the super block was
        solved by the per-super-block path.
    n_resonance_warnings : int
        :class:`~blocksim.spectra.ResonanceWarning` raised by the per-super-block path (not re-emitted).
    """

    energies: np.ndarray
    stress: np.ndarray
    weight_kept: np.ndarray
    lowest_excluded_energy: np.ndarray
    double_in_window: np.ndarray
    diagnostics: dict
    lead: np.ndarray
    excitations: np.ndarray
    excitation_offsets: np.ndarray
    omega: np.ndarray
    amp: np.ndarray
    population: np.ndarray
    temperatures: np.ndarray
    transition_offsets: np.ndarray
    fallback_reason: np.ndarray
    n_resonance_warnings: int

    @property
    def n_superblocks(self) -> int:
        """Number of super blocks P."""
        return int(self.energies.shape[0])

    @property
    def gaps(self) -> np.ndarray:
        """Lowest excitation energy of each super block ``[P]`` (E*)."""
        return self.excitations[self.excitation_offsets[:-1]]

    @property
    def fallback_fraction(self) -> float:
        """Fraction of the super blocks solved by the per-super-block path."""
        return float(np.count_nonzero(self.fallback_reason)) / max(1, self.fallback_reason.size)

    def segments(self) -> np.ndarray:
        """Super block of each transition ``[M]`` int64."""
        return np.repeat(np.arange(self.n_superblocks), np.diff(self.transition_offsets))

    def transitions(self, j: int | None = None) -> Transitions:
        """The transitions of super block ``j``, or of all super blocks joined (``j=None``, V = P)."""
        if j is None:
            return Transitions(self.omega, self.amp, self.population, self.temperatures,
                               volume=float(self.n_superblocks))
        a, b = self.transition_offsets[j], self.transition_offsets[j + 1]
        return Transitions(self.omega[a:b], self.amp[a:b], self.population[:, a:b], self.temperatures)


# ----------------------------------------------------------------------------------------------
# numba kernel
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _np_sum(a):
    """``np.sum`` of a contiguous 1-D float64 array, bit for bit (NumPy's pairwise sum, n ≤ 128 block)."""
    n = a.shape[0]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n > 128:  # NumPy recurses on halves above its block size
        half = (n // 2) - (n // 2) % 8
        return _np_sum(a[:half]) + _np_sum(a[half:])
    r = a[:8].copy()
    i = 8
    while i < n - (n % 8):
        for j in range(8):
            r[j] += a[i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def _stage_a(e, rmat, sraw, mi, mj, wfac, pos, table, n0, g, thr, thr_lo, thr_hi, st, h, vloc, dressed):
    """Rotation, local fields, one-body perturbation and dressing test of one super block.

    e [N, n]; rmat [N, 3, 3]; sraw [N, 6, n, n] (unrotated); mi, mj int64 [6], wfac [6, 6] (Mandel
    index pairs and w_a/w_b of :func:`~blocksim.model.tensors.rotation_mandel`); outputs st [N, 6, n, n]
    (Q(R)·T, symmetrized, as :func:`~blocksim.spectra.assemble_superblock`), h [N, 6]
    (:func:`~blocksim.spectra.perturbative._local_field_kernel` × g), vloc [N, n, n] (= 2h·T^s) and
    dressed [N] (the rule of ``_dress_one_body``). Returns 0 or a fallback reason.
    """
    nb, nl = e.shape[0], e.shape[1]
    off = n0 - 1
    rot = np.empty((nl, nl))
    q = np.empty((nb, 6, 6))
    for s in range(nb):
        for a in range(6):
            for b in range(6):
                qq = (rmat[s, mi[a], mi[b]] * rmat[s, mj[a], mj[b]]
                      + rmat[s, mi[a], mj[b]] * rmat[s, mj[a], mi[b]])
                if mi[b] == mj[b]:
                    qq = 0.5 * qq
                q[s, a, b] = qq * wfac[a, b]
    for s in range(nb):
        for a in range(6):
            for m in range(nl):
                for k in range(nl):
                    acc = 0.0
                    for b in range(6):
                        acc += q[s, a, b] * sraw[s, b, m, k]
                    rot[m, k] = acc
            for m in range(nl):
                for k in range(nl):
                    st[s, a, m, k] = 0.5 * (rot[m, k] + rot[k, m])
    for s in range(nb):
        for m in range(1, nl):
            if e[s, m] == 0.0:
                return _ZERO
    for s in range(nb):
        for a in range(6):
            acc = 0.0
            for t in range(nb):
                x = 0.0
                if t != s:
                    ix = pos[s, 0] - pos[t, 0] + off
                    iy = pos[s, 1] - pos[t, 1] + off
                    iz = pos[s, 2] - pos[t, 2] + off
                    for b in range(6):
                        x += table[ix, iy, iz, a, b] * st[t, b, 0, 0]
                acc += x
            h[s, a] = acc * g
    for s in range(nb):
        for m in range(nl):
            for k in range(nl):
                acc = 0.0
                for a in range(6):
                    acc += h[s, a] * st[s, a, m, k]
                vloc[s, m, k] = 2.0 * acc
        dressed[s] = False
        for m in range(nl):
            for k in range(nl):
                if m == k:
                    continue
                if m == 0:
                    gap = e[s, k]
                elif k == 0:
                    gap = e[s, m]
                else:
                    gap = abs(e[s, m] - e[s, k])
                o = abs(vloc[s, m, k])
                if o > 0.0:
                    if gap == 0.0 or o / gap > thr:
                        dressed[s] = True
                    elif thr_lo * gap < o <= thr_hi * gap:
                        return _BORDER
        for m in range(1, nl):
            if e[s, m] + (vloc[s, m, m] - vloc[s, 0, 0]) <= 0.0:
                dressed[s] = True
    return _OK


@numba.njit(cache=True, nogil=True)
def _stage_b(e, st, h, vloc, dressed, e_eff, x_eff, pos, table, tnorm, n0, g, thr, thr_lo, thr_hi,
             node_e, node_amp, ground_t, scal, dx, u1, comp, edges, edge_v, sd_single, sd_double, sd_v, dbl, counts):
    """First-order sums of one super block (after dressing) and its resonant single–single clusters.

    Inputs from :func:`_stage_a` and the dressed members (e_eff [N, n], x_eff [N, 6, n, n]). Outputs:
    node_e [N(n−1)] first-order energies and node_amp [N(n−1), 6] ground-row amplitudes of the single
    excitations (before the clusters are diagonalized), ground_t [6], scal[0] = ground_shift,
    dx, u1 (:class:`~blocksim.spectra.excited.FirstOrderContext`), sd_single [M], sd_double [M, 4],
    sd_v [M] (the single–double resonances as :func:`~blocksim.spectra.excited.single_double_resonances`
    lists them), dbl [D, 4] (the doubles, canonical, unique, sorted: node ns + row), edges [E, 2] /
    edge_v [E] (the resonant single–single pairs, i < j with V as the per-super-block pair list gives
    it, then the single–double pairs), comp [ns + D] (cluster of each node, −1 alone), counts [5] =
    (single–single pairs, clusters, singles in clusters, single–double pairs, doubles). Returns 0 or a
    fallback reason.
    """
    nb, nl = e.shape[0], e.shape[1]
    ne = nl - 1
    ns = nb * ne
    off = n0 - 1
    for s in range(nb):
        for m in range(1, nl):
            if e_eff[s, m] == 0.0:
                return _ZERO
    # pair sums (_pair_kernel arithmetic) on the effective members; resonant pairs become edges
    twog = 2.0 * g
    delta2 = np.zeros((nb, nl, 6))
    xs = np.empty(6)
    n_edges = 0
    for s in range(nb):
        for t in range(nb):
            if t == s:
                continue
            ix = pos[s, 0] - pos[t, 0] + off
            iy = pos[s, 1] - pos[t, 1] + off
            iz = pos[s, 2] - pos[t, 2] + off
            for mp in range(1, nl):
                ep = e_eff[t, mp]
                for a in range(6):
                    x = 0.0
                    for b in range(6):
                        x += table[ix, iy, iz, a, b] * x_eff[t, b, mp, 0]
                    xs[a] = x
                for mq in range(1, nl):
                    vv = 0.0
                    for a in range(6):
                        vv += x_eff[s, a, mq, 0] * xs[a]
                    vv *= twog
                    em = e_eff[s, mq]
                    diff = em - ep
                    av = abs(vv)
                    res = av > thr * abs(diff)
                    if av != 0.0 and thr_lo * abs(diff) < av <= thr_hi * abs(diff):
                        return _BORDER
                    if res and s < t:
                        if n_edges >= edges.shape[0] - sd_v.shape[0]:
                            return _RES_SS
                        edges[n_edges, 0] = s * ne + mq - 1
                        edges[n_edges, 1] = t * ne + mp - 1
                        edge_v[n_edges] = vv
                        n_edges += 1
                    if diff == 0.0 and not res:
                        continue
                    c = -1.0 / (em + ep)
                    if not res:
                        c = c + 1.0 / diff
                    fb = vv * c
                    for a in range(6):
                        delta2[s, mq, a] += fb * x_eff[t, a, mp, 0]
    # one-body terms (_one_body_terms) of the members that are not dressed; dressed: exact
    gt1 = np.zeros((nb, 6))
    d1 = np.empty(6)
    for s in range(nb):
        for m in range(1, nl):
            i = s * ne + m - 1
            if dressed[s]:
                node_e[i] = e_eff[s, m]
                for a in range(6):
                    d1[a] = x_eff[s, a, m, 0] - st[s, a, m, 0]
            else:
                node_e[i] = e[s, m] + vloc[s, m, m] - vloc[s, 0, 0]
                for a in range(6):
                    d1[a] = 0.0
                em = e[s, m]
                coeff = vloc[s, m, 0] / em
                for a in range(6):
                    d1[a] += coeff * (st[s, a, 0, 0] - st[s, a, m, m])
                    gt1[s, a] += -2.0 * coeff * st[s, a, m, 0]
                for k in range(1, nl):
                    if k == m:
                        continue
                    ek = e[s, k]
                    ck = vloc[s, k, m] / (em - ek) if abs(em - ek) > 0 else 0.0
                    c0 = -vloc[s, k, 0] / ek
                    for a in range(6):
                        d1[a] += ck * st[s, a, k, 0]
                        d1[a] += c0 * st[s, a, m, k]
            for a in range(6):
                node_amp[i, a] = st[s, a, m, 0] + d1[a] + delta2[s, m, a]
        if dressed[s]:
            for a in range(6):
                gt1[s, a] = x_eff[s, a, 0, 0] - st[s, a, 0, 0]
    for a in range(6):
        s0 = st[0, a, 0, 0]
        s1 = gt1[0, a]
        for s in range(1, nb):
            s0 += st[s, a, 0, 0]
            s1 += gt1[s, a]
        ground_t[a] = s0 + s1
    prod = np.empty(nb * 6)
    for s in range(nb):
        for a in range(6):
            prod[s * 6 + a] = st[s, a, 0, 0] * h[s, a]
    scal[0] = _np_sum(prod)
    # FirstOrderContext arrays: δX = X − δ_ab X_00, U = off-diagonal one-body part (0 if dressed)
    for s in range(nb):
        for a in range(6):
            for m in range(nl):
                for k in range(nl):
                    dx[s, a, m, k] = x_eff[s, a, m, k]
            for m in range(nl):
                dx[s, a, m, m] = x_eff[s, a, m, m] - x_eff[s, a, 0, 0]
        for m in range(nl):
            for k in range(nl):
                u1[s, m, k] = 0.0 if (dressed[s] or m == k) else vloc[s, m, k]
    # single–double resonances (_single_double_kernel order: t, p, q, s, m); a borderline one falls back
    g2 = 2.0 * g
    xnorm = np.empty((nb, nl))
    for s in range(nb):
        for m in range(nl):
            acc = 0.0
            for a in range(6):
                acc += x_eff[s, a, m, 0] * x_eff[s, a, m, 0]
            xnorm[s, m] = np.sqrt(acc)
    ws = np.empty(6)
    n_sd = 0
    for t in range(nb):
        for p in range(1, nl):
            for qq in range(1, nl):
                dxn = 0.0
                for a in range(6):
                    dxn += dx[t, a, qq, p] * dx[t, a, qq, p]
                dxn = np.sqrt(dxn) * g2
                target = e_eff[t, p] - e_eff[t, qq]
                for s in range(nb):
                    if s == t:
                        continue
                    ix = pos[t, 0] - pos[s, 0] + off
                    iy = pos[t, 1] - pos[s, 1] + off
                    iz = pos[t, 2] - pos[s, 2] + off
                    tn = dxn * tnorm[ix, iy, iz]
                    for m in range(1, nl):
                        den = target - e_eff[s, m]
                        if not tn * xnorm[s, m] * (1.0 + 1e-6) > thr_lo * abs(den):
                            continue
                        for b in range(6):
                            acc = 0.0
                            for a in range(6):
                                acc += dx[t, a, qq, p] * table[ix, iy, iz, a, b]
                            ws[b] = g2 * acc
                        two_body = 0.0
                        for b in range(6):
                            two_body += ws[b] * x_eff[s, b, m, 0]
                        at = abs(two_body)
                        if two_body == 0.0 or not at > thr_lo * abs(den):
                            continue
                        if at <= thr_hi * abs(den) or not tn * xnorm[s, m] > thr_hi * abs(den):
                            return _BORDER
                        if n_sd >= sd_v.shape[0]:
                            return _RES_SD
                        sd_single[n_sd] = t * ne + p - 1
                        sd_double[n_sd, 0] = t
                        sd_double[n_sd, 1] = qq
                        sd_double[n_sd, 2] = s
                        sd_double[n_sd, 3] = m
                        sd_v[n_sd] = two_body + u1[s, m, 0] if qq == p else two_body
                        n_sd += 1
    # the doubles: canonical (s, k, t, p) with s < t, unique, in lexicographic order (node ns + row)
    keys = np.empty(n_sd, dtype=np.int64)
    for i in range(n_sd):
        t, qq, s, m = sd_double[i, 0], sd_double[i, 1], sd_double[i, 2], sd_double[i, 3]
        if t > s:
            t, qq, s, m = s, m, t, qq
        keys[i] = ((t * nl + qq) * nb + s) * nl + m
    ukeys = np.unique(keys)
    nd = ukeys.shape[0]
    if nd > dbl.shape[0]:
        return _RES_SD
    for j in range(nd):
        kq = ukeys[j]
        dbl[j, 3] = kq % nl
        kq //= nl
        dbl[j, 2] = kq % nb
        kq //= nb
        dbl[j, 1] = kq % nl
        dbl[j, 0] = kq // nl
    n_nodes = ns + nd
    # clusters: connected components of the resonant pairs (union–find, smallest node as root)
    parent = np.arange(n_nodes)
    for k in range(n_edges + n_sd):
        if k < n_edges:
            ra, rb = edges[k, 0], edges[k, 1]
        else:
            ra = sd_single[k - n_edges]
            rb = ns + np.searchsorted(ukeys, keys[k - n_edges])
            edges[k, 0] = ra
            edges[k, 1] = rb
            edge_v[k] = sd_v[k - n_edges]
        while parent[ra] != ra:
            ra = parent[ra]
        while parent[rb] != rb:
            rb = parent[rb]
        if ra != rb:
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb
    size = np.zeros(n_nodes, dtype=np.int64)
    for i in range(n_nodes):
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
        size[r] += 1
    n_clusters = 0
    in_clusters = 0
    label = np.full(n_nodes, -1, dtype=np.int64)
    touched = np.zeros(nb, dtype=np.bool_)
    for i in range(n_nodes):
        r = parent[i]
        if size[r] > 1:
            if label[r] < 0:
                label[r] = n_clusters
                n_clusters += 1
                touched[:] = False
                for j in range(n_nodes):
                    if parent[j] == r:
                        if j < ns:
                            touched[j // ne] = True
                        else:
                            touched[dbl[j - ns, 0]] = True
                            touched[dbl[j - ns, 2]] = True
                if np.count_nonzero(touched) >= 9:  # scipy's row sums (first + rest) go pairwise at 8 more
                    return _RES_SS
            comp[i] = label[r]
            if i < ns:
                in_clusters += 1
        else:
            comp[i] = -1
    counts[0] = n_edges
    counts[1] = n_clusters
    counts[2] = in_clusters
    counts[3] = n_sd
    counts[4] = nd
    for i in range(ns):
        if not np.isfinite(node_e[i]):
            return _NONFINITE
        for a in range(6):
            if not np.isfinite(node_amp[i, a]):
                return _NONFINITE
    return _OK


@numba.njit(cache=True, nogil=True)
def _node_element(na, nbb, ns, ne, dbl, e_eff, x_eff, dx, u1, pos, table, n0, g2, thr, total_t0, ground_t, out):
    """out[:6] = ⟨na|T_tot|nbb⟩ between basis nodes na ≤ nbb (:func:`~blocksim.spectra.excited.node_element`)."""
    if nbb < ns:  # two singles: first order (single_element)
        s, m = na // ne, na % ne + 1
        t, p = nbb // ne, nbb % ne + 1
        for a in range(6):
            if s == t and m == p:
                out[a] = total_t0[a] - x_eff[s, a, 0, 0] + x_eff[s, a, m, m]
            elif s == t:
                out[a] = x_eff[s, a, m, p]
            else:
                out[a] = 0.0
        _y_kernel(s, m, t, p, e_eff, x_eff, dx, u1, pos, table, n0, g2, thr, out)
        _y_kernel(t, p, s, m, e_eff, x_eff, dx, u1, pos, table, n0, g2, thr, out)
        return
    u, lu, v, lv = dbl[nbb - ns, 0], dbl[nbb - ns, 1], dbl[nbb - ns, 2], dbl[nbb - ns, 3]
    if na < ns:  # single–double: T lowers the double's other member to its ground
        s, m = na // ne, na % ne + 1
        for a in range(6):
            if s == u and m == lu:
                out[a] = x_eff[v, a, 0, lv]
            elif s == v and m == lv:
                out[a] = x_eff[u, a, 0, lu]
            else:
                out[a] = 0.0
        return
    s, k, t, p = dbl[na - ns, 0], dbl[na - ns, 1], dbl[na - ns, 2], dbl[na - ns, 3]
    # levels of the members of either double in a and b (0 if not excited)
    mem = np.array([s, t, u, v])
    n_diff = 0
    w_mem = -1
    for i in range(4):
        x = mem[i]
        dup = False
        for j in range(i):
            if mem[j] == x:
                dup = True
        if dup:
            continue
        la = k if x == s else (p if x == t else 0)
        lb = lu if x == u else (lv if x == v else 0)
        if la != lb:
            n_diff += 1
            w_mem = x
    if n_diff == 0:
        for a in range(6):
            out[a] = ground_t[a] + (x_eff[s, a, k, k] - x_eff[s, a, 0, 0])
            out[a] = out[a] + (x_eff[t, a, p, p] - x_eff[t, a, 0, 0])
    elif n_diff == 1:
        la = k if w_mem == s else (p if w_mem == t else 0)
        lb = lu if w_mem == u else (lv if w_mem == v else 0)
        for a in range(6):
            out[a] = x_eff[w_mem, a, la, lb]
    else:
        for a in range(6):
            out[a] = 0.0


#: Stage C keeps the node elements of the kept states' support (at most this many nodes) for reuse; a
#: larger support is summed without the cache (same numbers). Read at call time (tests set it to 0).
KEPT_CACHE_NODES = 256


@numba.njit(cache=True, nogil=True)
def _stage_c(e_eff, x_eff, dx, u1, pos, table, n0, g, thr, n_keep, window, cache_nodes, node_e, node_amp, ground_t,
             coef_start, coef_len, coef_nodes, coef_vals, node_label, dbl, n_nodes, energies, amp0, kept, idx,
             order_out, scal):
    """Sorted spectrum, truncation and kept stress block of one super block (after its clusters).

    node_e [ns + D], node_amp [ns + D, 6]: the n_nodes = ns + (doubles) basis nodes after the clusters
    are diagonalized; the state held by node i is Σ_k coef_vals[o + k]·|coef_nodes[o + k]⟩
    (o = coef_start[i], k < coef_len[i]), or node i itself where coef_start[i] < 0 (:func:`_clusters`);
    node_label [ns + D] its dominant node; dbl [D, 4] the doubles. Outputs:
    energies [K], amp0 [K, 6] (``Spectrum.energies``, ``Spectrum.amp0``; K = 1 + n_nodes),
    kept [6, n_keep, n_keep] and idx [n_keep] (``Spectrum.truncate``), order_out [n_nodes] (node of
    each sorted excitation), scal[1:5] = (weight_kept, lowest_excluded_energy, double_in_window,
    lead member).
    """
    nb, nl = e_eff.shape[0], e_eff.shape[1]
    ne = nl - 1
    ns = nb * ne
    kk = n_nodes + 1
    g2 = 2.0 * g
    order = np.argsort(node_e[:n_nodes], kind="mergesort")
    energies[0] = 0.0
    for a in range(6):
        amp0[0, a] = ground_t[a]
    for r in range(n_nodes):
        i = order[r]
        order_out[r] = i
        energies[1 + r] = node_e[i]
        for a in range(6):
            amp0[1 + r, a] = node_amp[i, a]
    if window <= 0.0:
        for i in range(n_keep):
            idx[i] = i
    else:
        dist = np.empty(n_nodes)
        for r in range(n_nodes):
            dist[r] = abs(energies[1 + r] - window)
        near = np.sort(np.argsort(dist, kind="mergesort")[: n_keep - 1] + 1)
        idx[0] = 0
        for i in range(n_keep - 1):
            idx[1 + i] = near[i]
    for a in range(6):
        for i in range(n_keep):
            for j in range(n_keep):
                kept[a, i, j] = 0.0
        kept[a, 0, 0] = ground_t[a]
    for i in range(1, n_keep):
        for a in range(6):
            kept[a, 0, i] = amp0[idx[i], a]
            kept[a, i, 0] = amp0[idx[i], a]
    total_t0 = np.empty(6)
    for a in range(6):
        acc = x_eff[0, a, 0, 0]
        for s in range(1, nb):
            acc += x_eff[s, a, 0, 0]
        total_t0[a] = acc
    out = np.empty(6)
    acc6 = np.empty(6)
    # The kept states of one cluster share its nodes: each node element ⟨na|T|nb⟩ (na ≤ nb) is
    # computed once and reused (the same numbers, summed in the same order).
    loc = np.full(n_nodes, -1, dtype=np.int64)
    nu = 0
    for i in range(1, n_keep):
        si = order[idx[i] - 1]
        for ka in range(coef_len[si]):
            na = si if coef_start[si] < 0 else coef_nodes[coef_start[si] + ka]
            if loc[na] < 0:
                loc[na] = nu
                nu += 1
    nc = nu if nu <= cache_nodes else 0
    cache = np.empty((nc, nc, 6))
    have = np.zeros((nc, nc), dtype=np.bool_)
    for i in range(1, n_keep):
        si = order[idx[i] - 1]
        for j in range(i, n_keep):
            sj = order[idx[j] - 1]
            for a in range(6):
                acc6[a] = 0.0
            oi, oj = coef_start[si], coef_start[sj]
            for ka in range(coef_len[si]):
                for kb in range(coef_len[sj]):
                    na = si if oi < 0 else coef_nodes[oi + ka]
                    nbb = sj if oj < 0 else coef_nodes[oj + kb]
                    if na > nbb:
                        na, nbb = nbb, na
                    cc = (1.0 if oi < 0 else coef_vals[oi + ka]) * (1.0 if oj < 0 else coef_vals[oj + kb])
                    if nc > 0:
                        la, lb = loc[na], loc[nbb]
                        if not have[la, lb]:
                            _node_element(na, nbb, ns, ne, dbl, e_eff, x_eff, dx, u1, pos, table, n0, g2, thr,
                                          total_t0, ground_t, cache[la, lb])
                            have[la, lb] = True
                        for a in range(6):
                            acc6[a] += cc * cache[la, lb, a]
                    else:
                        _node_element(na, nbb, ns, ne, dbl, e_eff, x_eff, dx, u1, pos, table, n0, g2, thr,
                                      total_t0, ground_t, out)
                        for a in range(6):
                            acc6[a] += cc * out[a]
            for a in range(6):
                kept[a, i, j] = acc6[a]
                kept[a, j, i] = acc6[a]
    for a in range(6):
        for i in range(n_keep):
            for j in range(n_keep):
                kept[a, i, j] = 0.5 * (kept[a, i, j] + kept[a, j, i])
    sq = np.empty(n_nodes * 6)
    for r in range(n_nodes):
        for a in range(6):
            sq[r * 6 + a] = amp0[1 + r, a] * amp0[1 + r, a]  # x·x: NumPy squares arrays so, not with pow
    w = _np_sum(sq)
    sqk = np.empty((n_keep - 1) * 6)
    for i in range(n_keep - 1):
        for a in range(6):
            sqk[i * 6 + a] = amp0[idx[1 + i], a] * amp0[idx[1 + i], a]
    scal[1] = _np_sum(sqk) / w if w > 0 else 1.0
    scal[2] = np.nan
    for r in range(1, kk):
        found = False
        for i in range(n_keep):
            if idx[i] == r:
                found = True
        if not found:
            scal[2] = energies[r]
            break
    lo1 = np.inf
    lo2 = np.inf
    for s in range(nb):
        v = e_eff[s, 1]
        if v < lo1:
            lo2 = lo1
            lo1 = v
        elif v < lo2:
            lo2 = v
    scal[3] = 1.0 if lo1 + lo2 < energies[idx[n_keep - 1]] else 0.0
    lab = node_label[order[0]]
    scal[4] = lab // ne if lab < ns else dbl[lab - ns, 0]
    for a in range(6):
        for i in range(n_keep):
            for j in range(n_keep):
                if not np.isfinite(kept[a, i, j]):
                    return _NONFINITE
    for r in range(kk):
        if not np.isfinite(energies[r]):
            return _NONFINITE
        for a in range(6):
            if not np.isfinite(amp0[r, a]):
                return _NONFINITE
    return _OK


@numba.njit(cache=True, nogil=True, parallel=True)
def _stage_a_kernel_parallel(e, rmat, sraw, mi, mj, wfac, pos, table, n0, g, thr, thr_lo, thr_hi,
                             st, h, vloc, dressed, reason):
    """:func:`_stage_a` for every super block p (``prange``; arrays with a leading [P] axis)."""
    for p in numba.prange(e.shape[0]):
        reason[p] = _stage_a(e[p], rmat[p], sraw[p], mi, mj, wfac, pos, table, n0, g, thr, thr_lo, thr_hi,
                             st[p], h[p], vloc[p], dressed[p])


@numba.njit(cache=True, nogil=True, parallel=True)
def _stage_b_kernel_parallel(e, st, h, vloc, dressed, e_eff, x_eff, pos, table, tnorm, n0, g, thr, thr_lo,
                             thr_hi, node_e, node_amp, ground_t, scal, dx, u1, comp, edges, edge_v, sd_single,
                             sd_double, sd_v, dbl, counts, reason):
    """:func:`_stage_b` for every super block p with ``reason[p] == 0`` (``prange``)."""
    for p in numba.prange(e.shape[0]):
        if reason[p] == 0:
            reason[p] = _stage_b(e[p], st[p], h[p], vloc[p], dressed[p], e_eff[p], x_eff[p], pos, table, tnorm,
                                 n0, g, thr, thr_lo, thr_hi, node_e[p], node_amp[p], ground_t[p], scal[p],
                                 dx[p], u1[p], comp[p], edges[p], edge_v[p], sd_single[p], sd_double[p],
                                 sd_v[p], dbl[p], counts[p])


@numba.njit(cache=True, nogil=True, parallel=True)
def _stage_c_kernel_parallel(e_eff, x_eff, dx, u1, pos, table, n0, g, thr, n_keep, window, cache_nodes, node_e,
                             node_amp, ground_t, coef_start, coef_len, coef_nodes, coef_vals, node_label, dbl,
                             n_nodes, energies, amp0, kept, idx, order, scal, reason):
    """:func:`_stage_c` for every super block p with ``reason[p] == 0`` (``prange``)."""
    for p in numba.prange(e_eff.shape[0]):
        if reason[p] == 0:
            reason[p] = _stage_c(e_eff[p], x_eff[p], dx[p], u1[p], pos, table, n0, g, thr, n_keep, window,
                                 cache_nodes, node_e[p], node_amp[p], ground_t[p], coef_start[p], coef_len[p],
                                 coef_nodes, coef_vals, node_label[p], dbl[p], n_nodes[p], energies[p], amp0[p],
                                 kept[p], idx[p], order[p], scal[p])


_stage_a_kernel_serial = serial_twin(_stage_a_kernel_parallel)
_stage_b_kernel_serial = serial_twin(_stage_b_kernel_parallel)
_stage_c_kernel_serial = serial_twin(_stage_c_kernel_parallel)
#: Super blocks per call from which the ``prange`` kernels run (the thread pool costs ~0.5 ms to wake).
PARALLEL_MIN_SUPERBLOCKS = 64


# ----------------------------------------------------------------------------------------------
# Python side
# ----------------------------------------------------------------------------------------------
_MI = np.array([ij[0] for ij in MANDEL_INDEX], dtype=np.int64)
_MJ = np.array([ij[1] for ij in MANDEL_INDEX], dtype=np.int64)
_WFAC = np.outer(MANDEL_WEIGHT, 1.0 / MANDEL_WEIGHT)


def _check_inputs(energies, stress, rotations, n0):
    energies = np.ascontiguousarray(energies, dtype=float)
    stress = np.ascontiguousarray(stress, dtype=float)
    rotations = np.ascontiguousarray(rotations, dtype=float)
    if energies.ndim != 3:
        raise InputError(f"energies shape = {energies.shape}: must be [P, N, n]")
    p, nb, nl = energies.shape
    if stress.shape != (p, nb, 6, nl, nl):
        raise InputError(f"stress shape = {stress.shape}: must be {(p, nb, 6, nl, nl)}")
    if rotations.shape != (p, nb, 3, 3):
        raise InputError(f"rotations shape = {rotations.shape}: must be {(p, nb, 3, 3)}")
    if nb != n0**3:
        raise InputError(f"members per super block = {nb}: must be n0³ = {n0**3}")
    return energies, stress, rotations


def _lead_member(spec, member_energies) -> int:
    """Member whose excitation dominates the super block's first excited state (``Spectrum.labels``)."""
    labels = getattr(spec, "labels", None)
    if labels is not None and len(labels) > 1:
        excited = np.nonzero(np.asarray(labels[1]))[0]
        if excited.size:
            return int(excited[0])
    return int(np.argmin(member_energies[:, 1]))


def _empty_rows(p: int, n_keep: int) -> dict:
    return {
        "energies": np.zeros((p, n_keep)),
        "stress": np.zeros((p, 6, n_keep, n_keep)),
        "weight_kept": np.zeros(p),
        "lowest_excluded_energy": np.zeros(p),
        "double_in_window": np.zeros(p, dtype=bool),
        "diagnostics": {key: np.zeros(p) for key in SOLVER_DIAGNOSTICS},
        "lead": np.zeros(p, dtype=np.int64),
    }


def _reference_rows(rows, energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table, thr, n_keep,
                    window_center, temps, out: dict, ragged: dict) -> int:
    """The per-super-block path for the super blocks ``rows``: fills ``out`` and ``ragged``; returns warnings.

    ``ragged[name][j]`` gets super block j's excitations (``"exc"``), transition frequencies, amplitudes
    and populations (``"omega"``, ``"amp"``, ``"pop"`` as [M_j, n_T]).
    """
    from . import solve_counting_resonances  # the facade (package __init__)

    n_warn = 0
    for j in rows:
        sb = assemble_superblock(energies[j], stress[j], rotations[j], n0, coupling_g, cl_over_ct, form, table=table)
        spec, resonant = solve_counting_resonances(sb, "perturbative", resonance_threshold=thr)
        n_warn += resonant
        if len(spec.energies) < n_keep:
            raise InputError(f"n_keep = {n_keep}: super block {j} has only {len(spec.energies)} computed states")
        e_new, t_new, diag = spec.truncate(n_keep, window_center)
        tr = spec.transitions(temps)
        out["energies"][j] = e_new
        out["stress"][j] = t_new
        out["weight_kept"][j] = diag["weight_kept"]
        out["lowest_excluded_energy"][j] = diag["lowest_excluded_energy"]
        out["double_in_window"][j] = diag["double_in_window"]
        for key in SOLVER_DIAGNOSTICS:
            out["diagnostics"][key][j] = spec.diagnostics[key]
        out["lead"][j] = _lead_member(spec, energies[j])
        ragged["exc"][j] = spec.energies[1:]
        ragged["omega"][j] = tr.omega
        ragged["amp"][j] = tr.amp
        ragged["pop"][j] = tr.population.T
    return n_warn


def _finish(out: dict, common: dict | None, ragged: dict, temps, reason, n_warn) -> BatchSolution:
    """Join the transitions of all rows: the kernels' rows from ``common`` (:func:`_common_transitions`, or
    None), the rows solved elsewhere from ``ragged[name][j]`` (per-super-block path, retry sub-batches)."""
    p = out["energies"].shape[0]
    n_exc = np.zeros(p, dtype=np.int64)
    n_tr = np.zeros(p, dtype=np.int64)
    use = np.zeros(p, dtype=bool)
    if common is not None:
        nb, nl = common["e_eff"].shape[1:]
        use[:] = True
        n_exc[:] = common["n_nodes"]
        n_tr[:] = common["n_nodes"] + nb * (nl - 1) ** 2
    for j in ragged["exc"]:
        use[j] = False
        n_exc[j] = len(ragged["exc"][j])
        n_tr[j] = len(ragged["omega"][j])
    exc_off = np.zeros(p + 1, dtype=np.int64)
    np.cumsum(n_exc, out=exc_off[1:])
    tr_off = np.zeros(p + 1, dtype=np.int64)
    np.cumsum(n_tr, out=tr_off[1:])
    exc = np.empty(exc_off[-1])
    omega = np.empty(tr_off[-1])
    amp = np.empty((tr_off[-1], 6))
    pop = np.empty((temps.size, tr_off[-1]))
    if common is not None:
        _fill_common(use, common["e_all"], common["amp0"], common["pop0"], common["e_eff"], common["x_eff"],
                     common["p_members"], common["n_nodes"], exc_off, tr_off, exc, omega, amp, pop)
    for j in ragged["exc"]:
        exc[exc_off[j]:exc_off[j + 1]] = ragged["exc"][j]
        sl = slice(tr_off[j], tr_off[j + 1])
        omega[sl] = ragged["omega"][j]
        amp[sl] = ragged["amp"][j]
        pop[:, sl] = ragged["pop"][j].T
    return BatchSolution(excitations=exc, excitation_offsets=exc_off, omega=omega, amp=amp, population=pop,
                         temperatures=temps, transition_offsets=tr_off, fallback_reason=reason,
                         n_resonance_warnings=n_warn, **out)


@numba.njit(cache=True, nogil=True)
def _fill_common(use, e_all, amp0, pop0, e_eff, x_eff, p_members, n_nodes, exc_off, tr_off, exc, omega, amp, pop):
    """Write the transitions of the rows ``use`` into the joined arrays, in ``Spectrum.transitions`` order.

    Row j: its excitations e_all[j, 1:1 + n_nodes[j]] (ground → state, amplitude amp0, population pop0),
    then each member's excited → other transitions (s, m ≥ 1, k ≠ m): ω = E_k − E_m, amplitude
    X^s_mk, population p_m^(s)(T). Copies and one subtraction each: the NumPy route's numbers bit for bit.
    """
    nb, nl = e_eff.shape[1], e_eff.shape[2]
    nt = pop.shape[0]
    for j in range(use.shape[0]):
        if not use[j]:
            continue
        a = exc_off[j]
        t = tr_off[j]
        for r in range(n_nodes[j]):
            exc[a + r] = e_all[j, 1 + r]
            omega[t] = e_all[j, 1 + r]
            for c in range(6):
                amp[t, c] = amp0[j, 1 + r, c]
            for it in range(nt):
                pop[it, t] = pop0[j, r, it]
            t += 1
        for s in range(nb):
            for m in range(1, nl):
                for k in range(nl):
                    if k == m:
                        continue
                    omega[t] = e_eff[j, s, k] - e_eff[j, s, m]
                    for c in range(6):
                        amp[t, c] = x_eff[j, s, c, m, k]
                    for it in range(nt):
                        pop[it, t] = p_members[j, s, m, it]
                    t += 1


def solve_batch_reference(energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table, *,
                          resonance_threshold=0.1, n_keep=3, window_center=None, temperatures=(0.1,)) -> BatchSolution:
    """The per-super-block path: the slow, obvious reference of :func:`solve_batch` (STYLE 4).

    Each super block is assembled (:func:`~blocksim.spectra.assemble_superblock`), solved
    (:func:`blocksim.spectra.solve`, ``"perturbative"``), truncated (:meth:`Spectrum.truncate`) and
    its transitions taken (:meth:`Spectrum.transitions`), one after the other. Same arguments and
    output as :func:`solve_batch`, with ``fallback_reason`` all 0.

    Parameters
    ----------
    energies, stress, rotations : ndarray [P, N, n], [P, N, 6, n, n], [P, N, 3, 3]
        Members of each super block (E*, T*; stress unrotated) and their rotations.
    n0, coupling_g, cl_over_ct, form, table
        As for :func:`solve_batch`.
    resonance_threshold, n_keep, window_center, temperatures
        As for :func:`solve_batch`.

    Returns
    -------
    BatchSolution
        One row per super block, in order.
    """
    energies, stress, rotations = _check_inputs(energies, stress, rotations, n0)
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    p = energies.shape[0]
    out = _empty_rows(p, n_keep)
    ragged = {"exc": {}, "omega": {}, "amp": {}, "pop": {}}
    n_warn = _reference_rows(range(p), energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table,
                             float(resonance_threshold), n_keep, window_center, temps, out, ragged)
    return _finish(out, None, ragged, temps, np.zeros(p, dtype=np.int64), n_warn)


def _limits(nb: int, ne: int, full: bool) -> tuple[int, int, int]:
    """(resonant single–single pairs, single–double pairs, doubles) the kernel arrays hold per super block.

    The default limits (4·N(n−1), 4·N(n−1), 2·N(n−1)) hold the weak-coupling super blocks; ``full``
    gives the retry limits: every pair and double there can be at N0 = 2, at most 8× the defaults.
    """
    ns = nb * ne
    if not full:
        return 4 * ns, 4 * ns, 2 * ns
    pairs = nb * (nb - 1) // 2 * ne * ne
    return min(pairs, 32 * ns), min(nb * (nb - 1) * ne**3, 32 * ns), min(pairs, 16 * ns)


#: Super blocks beyond the default limits are solved again in sub-batches with the full limits; each
#: sub-batch holds at most this many bytes of cluster coefficients (16 bytes per node pair).
RETRY_BYTES = 64 * 2**20


def solve_batch(energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table, *,
                resonance_threshold=0.1, n_keep=3, window_center=None, temperatures=(0.1,)) -> BatchSolution:
    """Solve, truncate and take the transitions of P small super blocks in one numba call.

    Results are those of :func:`solve_batch_reference` (the per-super-block path) bit for bit: the
    kernel does the common path with the reference's arithmetic, and every super block with a
    dressed member or a resonance is solved by the per-super-block path (module docstring).

    Parameters
    ----------
    energies : ndarray [P, N, n]
        Member levels of each super block (ground 0, ascending), units E*; N = n0³.
    stress : ndarray [P, N, 6, n, n]
        Member stress (Mandel, each block's eigenbasis, not yet rotated), units T*.
    rotations : ndarray [P, N, 3, 3]
        Rotation of each member (T → R T Rᵀ).
    n0 : int
        Lattice edge (2 ≤ n0 ≤ :data:`BATCH_MAX_N0`); member i sits on site i of the cube in C order.
    coupling_g, cl_over_ct, form : float, float, str
        Coupling of this scale, c_l/c_t and the form of Λ (:func:`~blocksim.spectra.assemble_superblock`).
    table : ndarray [2n0−1]³×[6, 6]
        Λ per displacement (:func:`blocksim.model.coupling.displacement_table`, without g).
    resonance_threshold : float
        As for :func:`blocksim.spectra.solve`.
    n_keep : int
        States kept per super block (:meth:`Spectrum.truncate`).
    window_center : float or None
        None keeps the lowest ``n_keep`` states; else the centre of the energy window (E*).
    temperatures : array_like [n_T]
        Temperatures of the transitions' populations (E*).

    Returns
    -------
    BatchSolution
        One row per super block, in order.
    """
    return _solve_batch(energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table, resonance_threshold,
                        n_keep, window_center, temperatures, full=False)


def _solve_batch(energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table, resonance_threshold, n_keep,
                 window_center, temperatures, *, full: bool) -> BatchSolution:
    """:func:`solve_batch` with the default kernel limits (``full=False``: overflowing rows are retried
    with the full limits) or the full ones (``full=True``: overflowing rows go to the per-super-block path)."""
    n0 = int(n0)
    if not 2 <= n0 <= BATCH_MAX_N0:
        raise InputError(f"n0 = {n0}: the batched solver takes 2 ≤ n0 ≤ {BATCH_MAX_N0}")
    energies, stress, rotations = _check_inputs(energies, stress, rotations, n0)
    p, nb, nl = energies.shape
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    thr = float(resonance_threshold)
    kk = 1 + nb * (nl - 1)
    kwargs = dict(resonance_threshold=thr, n_keep=n_keep, window_center=window_center, temperatures=temps)
    if n_keep > kk or p == 0:  # only super blocks with resonant doubles could have n_keep states
        return solve_batch_reference(energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table, **kwargs)
    window = -1.0 if window_center is None else float(window_center)
    if window_center is not None and not (np.isfinite(window) and window > 0):
        raise InputError(f"window_center = {window_center!r}: must be a finite energy > 0 (units E*)")
    pos = np.ascontiguousarray(np.stack(np.unravel_index(np.arange(nb), (n0, n0, n0)), axis=1), dtype=np.int64)
    table = np.ascontiguousarray(table, dtype=float)
    tnorm = np.sqrt(np.sum(table**2, axis=(-2, -1)))
    g = float(coupling_g)
    thr_lo, thr_hi = thr * (1.0 - FALLBACK_MARGIN), thr * (1.0 + FALLBACK_MARGIN)
    par = p >= PARALLEL_MIN_SUPERBLOCKS
    ns = nb * (nl - 1)
    # stage A: rotation, local fields, dressing test (rows of fallback super blocks stay partly unwritten)
    st = np.zeros((p, nb, 6, nl, nl))
    h = np.zeros((p, nb, 6))
    vloc = np.zeros((p, nb, nl, nl))
    dressed = np.zeros((p, nb), dtype=bool)
    reason = np.zeros(p, dtype=np.int64)
    (_stage_a_kernel_parallel if par else _stage_a_kernel_serial)(
        energies, rotations, stress, _MI, _MJ, _WFAC, pos, table, n0, g, thr, thr_lo, thr_hi, st, h, vloc,
        dressed, reason)
    e_eff, x_eff = _dress(energies, st, vloc, dressed & (reason == 0)[:, None])
    # stage B: first-order sums, resonant single–single and single–double pairs, clusters
    n_ss_max, n_sd_max, n_dbl_max = _limits(nb, nl - 1, full)
    nn = ns + n_dbl_max
    node_e = np.zeros((p, nn))
    node_amp = np.zeros((p, nn, 6))
    ground_t = np.zeros((p, 6))
    scal = np.zeros((p, 5))
    dx = np.zeros_like(st)
    u1 = np.zeros_like(vloc)
    comp = np.full((p, nn), -1, dtype=np.int64)
    edges = np.zeros((p, n_ss_max + n_sd_max, 2), dtype=np.int64)
    edge_v = np.zeros((p, n_ss_max + n_sd_max))
    sd_single = np.zeros((p, n_sd_max), dtype=np.int64)
    sd_double = np.zeros((p, n_sd_max, 4), dtype=np.int64)
    sd_v = np.zeros((p, n_sd_max))
    dbl = np.zeros((p, n_dbl_max, 4), dtype=np.int64)
    counts = np.zeros((p, 5), dtype=np.int64)
    (_stage_b_kernel_parallel if par else _stage_b_kernel_serial)(
        energies, st, h, vloc, dressed, e_eff, x_eff, pos, table, tnorm, n0, g, thr, thr_lo, thr_hi, node_e,
        node_amp, ground_t, scal, dx, u1, comp, edges, edge_v, sd_single, sd_double, sd_v, dbl, counts, reason)
    ok = reason == 0
    counts[~ok] = 0
    _doubles(node_e, node_amp, dbl, counts[:, 4], e_eff, x_eff, dx, pos, table, n0, g, thr)
    cl = _clusters(node_e, node_amp, comp, edges, edge_v, counts, dbl, ok, nb, nl)
    # stage C: sorted spectrum, truncation, kept block
    n_nodes = ns + counts[:, 4]
    e_all = np.zeros((p, 1 + nn))
    amp0 = np.zeros((p, 1 + nn, 6))
    kept = np.zeros((p, 6, n_keep, n_keep))
    idx = np.zeros((p, n_keep), dtype=np.int64)
    order = np.zeros((p, nn), dtype=np.int64)
    (_stage_c_kernel_parallel if par else _stage_c_kernel_serial)(
        e_eff, x_eff, dx, u1, pos, table, n0, g, thr, int(n_keep), window, int(KEPT_CACHE_NODES), cl["node_e"],
        cl["node_amp"], ground_t, cl["coef_start"], cl["coef_len"], cl["coef_nodes"], cl["coef_vals"], cl["node_label"], dbl, n_nodes,
        e_all, amp0, kept, idx, order, scal, reason)
    ok = reason == 0
    frac = counts[:, 2] / ns
    out = {
        "energies": np.take_along_axis(e_all, idx, axis=1),
        "stress": kept,
        "weight_kept": scal[:, 1].copy(),
        "lowest_excluded_energy": scal[:, 2].copy(),
        "double_in_window": scal[:, 3] > 0.5,
        "diagnostics": {
            "n_states": (1 + n_nodes).astype(float),
            "ground_shift": scal[:, 0].copy(),
            "n_resonant_pairs": counts[:, 0].astype(float),
            "n_resonant_single_double": counts[:, 3].astype(float),
            "n_resonant_clusters": counts[:, 1].astype(float),
            "max_cluster_size": cl["max_size"].astype(float),
            "resonant_fraction": frac,
            "n_dressed_members": np.count_nonzero(dressed, axis=1).astype(float),
        },
        "lead": scal[:, 4].astype(np.int64),
    }
    common = _common_transitions(e_eff, x_eff, e_all, amp0, cl, order, n_nodes, temps)
    ragged = {"exc": {}, "omega": {}, "amp": {}, "pop": {}}
    n_warn = int(np.count_nonzero(ok & (frac > RESONANT_FRACTION_WARN)))  # counted, not emitted
    fallback = np.nonzero(reason)[0]
    if not full:  # beyond the default limits: the kernels again, with room for every pair and double
        over = fallback[np.isin(reason[fallback], (_RES_SS, _RES_SD))]
        if over.size:
            nn_full = ns + _limits(nb, nl - 1, True)[2]
            size = max(1, RETRY_BYTES // (16 * nn_full * nn_full))
            for i in range(0, over.size, size):
                rows = over[i:i + size]
                sub = _solve_batch(energies[rows], stress[rows], rotations[rows], n0, coupling_g, cl_over_ct, form,
                                   table, thr, n_keep, window_center, temps, full=True)
                _take_rows(sub, rows, out, ragged)
                reason[rows] = sub.fallback_reason
                n_warn += sub.n_resonance_warnings
            fallback = np.setdiff1d(fallback, over)
    if fallback.size:
        n_warn += _reference_rows(fallback, energies, stress, rotations, n0, coupling_g, cl_over_ct, form, table,
                                  thr, n_keep, window_center, temps, out, ragged)
    return _finish(out, common, ragged, temps, reason, n_warn)


def _take_rows(sub: BatchSolution, rows, out: dict, ragged: dict) -> None:
    """Copy the rows of ``sub`` (a sub-batch) into rows ``rows`` of ``out`` and ``ragged``."""
    for key in ("energies", "stress", "weight_kept", "lowest_excluded_energy", "double_in_window", "lead"):
        out[key][rows] = getattr(sub, key)
    for key in SOLVER_DIAGNOSTICS:
        out["diagnostics"][key][rows] = sub.diagnostics[key]
    for i, j in enumerate(rows):
        ragged["exc"][j] = sub.excitations[sub.excitation_offsets[i]:sub.excitation_offsets[i + 1]]
        a, b = sub.transition_offsets[i], sub.transition_offsets[i + 1]
        ragged["omega"][j] = sub.omega[a:b]
        ragged["amp"][j] = sub.amp[a:b]
        ragged["pop"][j] = sub.population[:, a:b].T


def _dress(energies, st, vloc, mask):
    """Members with a one-body resonance diagonalized in their local field (``_dress_one_body``, batched).

    Returns ``(e_eff [P, N, n], x_eff [P, N, 6, n, n])``: eigenvalues of H_0 + 2h·T relative to the
    lowest and the stress in that eigenbasis where ``mask`` [P, N], the members unchanged elsewhere.
    :func:`~blocksim.spectra.spectrum.eigh_pair` and :func:`~blocksim.spectra.excited.rotate_operators`
    give the per-member results bit for bit (:func:`_dress_kernel`).
    """
    e_eff = energies.copy()
    x_eff = st.copy()
    if mask.any():
        _dress_kernel(energies, st, vloc, mask, e_eff, x_eff)
    return e_eff, x_eff


@numba.njit(cache=True, nogil=True)
def _dress_kernel(energies, st, vloc, mask, e_eff, x_eff):
    """:func:`_dress` member by member: H = vloc with E_m + V_mm on the diagonal, (w − w_0, cᵀ·T·c)."""
    nl = energies.shape[2]
    ham = np.empty((nl, nl))
    for p in range(mask.shape[0]):
        for s in range(mask.shape[1]):
            if not mask[p, s]:
                continue
            for i in range(nl):  # np.diag(E) + V, as the per-member path builds it
                for j in range(nl):
                    ham[i, j] = 0.0 + vloc[p, s, i, j]
                ham[i, i] = energies[p, s, i] + vloc[p, s, i, i]
            w, c = eigh_pair(ham)
            for i in range(nl):
                e_eff[p, s, i] = w[i] - w[0]
            rotate_operators(c[np.newaxis], st[p, s][np.newaxis], x_eff[p, s][np.newaxis])


def _doubles(node_e, node_amp, dbl, nd, e_eff, x_eff, dx, pos, table, n0, g, thr) -> None:
    """First-order energies and ground-row amplitudes of the doubles of all super blocks (in place).

    :func:`~blocksim.spectra.excited.double_energy` (the same quadratic forms) and the numba kernel of
    :func:`~blocksim.spectra.excited.double_amplitude` over all doubles (bit for bit the per-double results).
    Node ns + j of super block p is the double ``dbl[p, j] = (s, k, t, q)``, j < nd[p].
    """
    if np.any(nd):
        _doubles_kernel(node_e, node_amp, dbl, np.asarray(nd, dtype=np.int64), e_eff, x_eff, dx, pos, table, n0,
                        float(g), float(thr), e_eff.shape[1] * (e_eff.shape[2] - 1), e_eff.shape[2] - 1)


@numba.njit(cache=True, nogil=True)
def _doubles_kernel(node_e, node_amp, dbl, nd, e, x, dx, pos, table, n0, g, thr, ns, ne):
    """The loop of :func:`_doubles`: W = 2g·Λ(r_s − r_t), the double's energy and its amplitude, double by double."""
    w = np.empty((table.shape[3], table.shape[4]))
    scratch = np.empty((4, e.shape[2]))
    for p in range(nd.shape[0]):
        for j in range(nd[p]):
            s, k, t, q = dbl[p, j, 0], dbl[p, j, 1], dbl[p, j, 2], dbl[p, j, 3]
            d0 = pos[s, 0] - pos[t, 0] + n0 - 1
            d1 = pos[s, 1] - pos[t, 1] + n0 - 1
            d2 = pos[s, 2] - pos[t, 2] + n0 - 1
            for a in range(w.shape[0]):
                for b in range(w.shape[1]):
                    w[a, b] = (2.0 * g) * table[d0, d1, d2, a, b]
            node_e[p, ns + j] = ((node_e[p, s * ne + k - 1] + node_e[p, t * ne + q - 1])
                                 + quadratic_form(dx[p, s, :, k, k], w, dx[p, t, :, q, q]))
            double_amplitude_scratch(e[p], x[p], dx[p], w, thr, s, k, t, q, node_amp[p, ns + j], scratch)


def _clusters(node_e, node_amp, comp, edges, edge_v, counts, dbl, ok, nb, nl) -> dict:
    """Resonant clusters of all super blocks diagonalized exactly (:func:`_clusters_kernel`).

    As in :func:`~blocksim.spectra.perturbative.solve_perturbative`: each cluster's matrix is its
    first-order node energies on the diagonal and the resonant couplings V off it; its eigenvectors
    (:func:`~blocksim.spectra.spectrum.eigh_pair`, the per-super-block path's routine) rotate the
    ground-row amplitudes (the sums of :func:`~blocksim.spectra.spectrum.rotate_rows`) and give each
    state's member weights (:func:`~blocksim.spectra.spectrum.carrier_weights_into`: the single nodes'
    members; ½ on each member of a double only for a state without a single component), its dominant
    node and its coefficients: the per-cluster results bit for bit.

    Only cluster nodes are stored: node i of super block p holds the state Σ_k coef_vals[o + k]·|coef_nodes[o + k]⟩
    (o = coef_start[p, i], k < coef_len[p, i]) with member weights weights[weight_row[p, i]]; −1 marks a
    node alone (itself, weight 1 on its member).
    """
    p, nn = node_e.shape
    ns = nb * (nl - 1)
    out = {"node_e": node_e.copy(), "node_amp": node_amp.copy(), "node_label": np.tile(np.arange(nn), (p, 1)),
           "max_size": np.full(p, 1 if ns else 0),
           "coef_start": np.full((p, nn), -1, dtype=np.int64), "coef_len": np.ones((p, nn), dtype=np.int64)}
    n_rows, n_coef = _cluster_totals(comp, counts, ok)
    out["weight_row"] = np.full((p, nn), -1, dtype=np.int64)
    out["weights"] = np.zeros((n_rows, nb))
    out["coef_nodes"] = np.zeros(n_coef, dtype=np.int64)
    out["coef_vals"] = np.zeros(n_coef)
    if n_rows:
        _clusters_kernel(node_e, node_amp, comp, edges, edge_v, counts, dbl, ok, nb, nl, out["node_e"],
                         out["node_amp"], out["node_label"], out["max_size"], out["weight_row"], out["weights"],
                         out["coef_start"], out["coef_len"], out["coef_nodes"], out["coef_vals"])
    return out


@numba.njit(cache=True, nogil=True)
def _cluster_totals(comp, counts, ok):
    """(cluster states, cluster coefficients) of all super blocks: Σ c and Σ c² over their clusters."""
    rows = 0
    coef = 0
    size = np.zeros(comp.shape[1], dtype=np.int64)
    for p in range(comp.shape[0]):
        if not ok[p]:
            continue
        size[:] = 0
        for i in range(comp.shape[1]):
            if comp[p, i] >= 0:
                size[comp[p, i]] += 1
        for c in range(counts[p, 1]):
            rows += size[c]
            coef += size[c] * size[c]
    return rows, coef


@numba.njit(cache=True, nogil=True)
def _clusters_kernel(node_e, node_amp, comp, edges, edge_v, counts, dbl, ok, nb, nl, out_e, out_amp, out_label,
                     max_size, out_wrow, weights, out_cstart, out_clen, coef_nodes, coef_vals):
    """:func:`_clusters` super block by super block, cluster by cluster (labels ascending, nodes ascending).

    State i of a cluster, Σ_k vec[k, i]·|nodes[k]⟩, sits at node nodes[i]: its energy, its ground-row
    amplitude Σ_k vec[k, i]·node_amp[p, nodes[k]], its member weights (carrier_weights_into of |vec|²
    on the nodes' members: 1 on a single's member, ½ on each member of a double), its dominant node (the
    first largest |vec|²) and its coefficients. Weight rows and coefficient blocks are numbered in this
    order. The edges enter the cluster matrix in their order, (a, b) entries first, then (b, a).
    """
    ne = nl - 1
    ns = nb * ne
    nn = comp.shape[1]
    members = np.empty(nn, dtype=np.int64)
    rank = np.empty(nn, dtype=np.int64)
    start = np.zeros(nn + 1, dtype=np.int64)
    hc_buf = np.empty((nn, nn))
    prob_buf = np.empty((nn, nn))
    occ_buf = np.empty((nn, nb))
    single_buf = np.empty(nn, dtype=np.bool_)
    amp_buf = np.empty((1, nn, node_amp.shape[2]))
    rot_buf = np.empty((1, nn, node_amp.shape[2]))
    row = 0
    coef = 0
    for p in range(comp.shape[0]):
        if not ok[p] or counts[p, 1] == 0:
            continue
        n_cl = counts[p, 1]
        n_edges = counts[p, 0] + counts[p, 3]
        # nodes of each cluster, ascending (counting sort by label)
        start[: n_cl + 1] = 0
        for i in range(nn):
            if comp[p, i] >= 0:
                start[comp[p, i] + 1] += 1
        for c in range(n_cl):
            start[c + 1] += start[c]
        fill = start[:n_cl].copy()
        for i in range(nn):
            cl = comp[p, i]
            if cl >= 0:
                members[fill[cl]] = i
                rank[i] = fill[cl] - start[cl]
                fill[cl] += 1
        for cl in range(n_cl):
            nodes = members[start[cl]:start[cl + 1]]
            c = nodes.shape[0]
            max_size[p] = max(max_size[p], c)
            hc = hc_buf[:c, :c]
            hc[:, :] = 0.0
            for k in range(c):
                hc[k, k] = node_e[p, nodes[k]]
            for k in range(n_edges):
                a = edges[p, k, 0]
                if comp[p, a] == cl:
                    hc[rank[a], rank[edges[p, k, 1]]] = edge_v[p, k]
            for k in range(n_edges):
                a = edges[p, k, 0]
                if comp[p, a] == cl:
                    hc[rank[edges[p, k, 1]], rank[a]] = edge_v[p, k]
            ev, vec = eigh_pair(hc)
            prob = prob_buf[:c, :c]
            occ = occ_buf[:c]
            occ[:, :] = 0.0
            single = single_buf[:c]
            for k in range(c):
                node = nodes[k]
                single[k] = node < ns
                if single[k]:
                    occ[k, node // ne] = 1.0
                else:
                    occ[k, dbl[p, node - ns, 0]] = 0.5
                    occ[k, dbl[p, node - ns, 2]] = 0.5
            for i in range(c):
                for k in range(c):
                    prob[i, k] = vec[k, i] * vec[k, i]
            carrier_weights_into(prob, occ, single, weights[row:row + c])
            amp_c = amp_buf[:, :c]
            for k in range(c):
                amp_c[0, k] = node_amp[p, nodes[k]]
            rot = rotate_rows(vec.T[np.newaxis], amp_c, rot_buf[:, :c])
            for i in range(c):
                node = nodes[i]
                out_e[p, node] = ev[i]
                out_amp[p, node] = rot[0, i]
                best = 0
                for k in range(1, c):
                    if prob[i, k] > prob[i, best]:
                        best = k
                out_label[p, node] = nodes[best]
                out_wrow[p, node] = row + i
                out_cstart[p, node] = coef + i * c
                out_clen[p, node] = c
                for k in range(c):
                    coef_nodes[coef + i * c + k] = nodes[k]
                    coef_vals[coef + i * c + k] = vec[k, i]
            row += c
            coef += c * c


@numba.njit(cache=True, nogil=True)
def _ground_populations(weight_row, weights, order, n_nodes, ne, p0, out):
    """out[p, r, T] = Σ_s w_s p0[p, s, T] / Σ_s w_s for the sorted state r < n_nodes[p] (node order[p, r]).

    w = weights[weight_row[p, node]] for a cluster node, else 1 on the node's member (node // ne).
    The numerator is summed over s in order; the norm as scipy's row sum of the per-super-block path
    (np.add.reduceat, whose stored entries are the positive weights): the first positive weight plus
    the sum of the others, then max(norm, 1e-300). Element by element, so bit for bit the
    per-super-block arithmetic (for rows of at most 8 weights; numpy sums longer rows pairwise).
    """
    n_p = order.shape[0]
    nb = weights.shape[1]
    nt = p0.shape[2]
    w = np.empty(nb)
    for p in range(n_p):
        for r in range(n_nodes[p]):
            node = order[p, r]
            if weight_row[p, node] >= 0:
                w[:] = weights[weight_row[p, node]]
            else:
                w[:] = 0.0
                w[node // ne] = 1.0
            first = 0
            for s in range(nb):
                if w[s] > 0:
                    first = s
                    break
            rest = 0.0
            for s in range(nb):
                rest += 0.0 if s == first else w[s]
            norm = max(w[first] + rest, 1e-300)
            for it in range(nt):
                acc = 0.0
                for s in range(nb):
                    acc += w[s] * p0[p, s, it]
                out[p, r, it] = acc / norm


def _common_transitions(e_eff, x_eff, e_all, amp0, cl, order, n_nodes, temps) -> dict:
    """What :func:`_fill_common` needs for the ``Spectrum.transitions`` rows of the batched super blocks.

    A ground → excitation transition gets Σ_s w_s p_0^(s)(T) / Σ_s w_s with the state's member weights w
    (1 on one member for a plain single excitation; :func:`_ground_populations`, DESIGN note 2); the
    members' own excited → other transitions get p_m^(s)(T) (effective members).
    """
    p, nb, nl = e_eff.shape
    nn = order.shape[1]
    p_members = boltzmann(e_eff.reshape(p * nb, nl), temps).reshape(temps.size, p, nb, nl)
    p_members = np.ascontiguousarray(np.moveaxis(p_members, 0, -1))  # [P, N, n, n_T]
    pop0 = np.empty((p, nn, temps.size))
    _ground_populations(cl["weight_row"], cl["weights"], order, np.asarray(n_nodes, dtype=np.int64), nl - 1,
                        np.ascontiguousarray(p_members[:, :, 0, :]), pop0)
    return {"e_all": e_all, "amp0": amp0, "pop0": pop0, "e_eff": e_eff, "x_eff": x_eff, "p_members": p_members,
            "n_nodes": np.asarray(n_nodes, dtype=np.int64)}
