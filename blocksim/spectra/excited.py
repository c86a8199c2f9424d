"""First-order theory beyond the ground row: the kept stress block and single–double resonances.

Companion of :mod:`blocksim.spectra.perturbative` (Eq. 3.2 of [ZL]). Everything here works in the
*effective member basis* of the perturbative solver: members with a one-body resonance are
diagonalized exactly in their local field ("dressed"); the others keep their own basis. Notation
(all arrays of :class:`FirstOrderContext`):

* E^u_a = ``e[u, a]`` (ground 0), X^u_ab = ``x[u, :, a, b]`` (K interacting components: the stress,
  then the dipole operator if present), T^u = the first 6 (stress) components;
* δX^u_ab = X^u_ab − δ_ab X^u_00 (fluctuation about the member's ground expectation);
* U^u_ab = ``u1[u, a, b]``: the off-diagonal one-body part of V on member u, 2h^u·X^u_ab with the
  local field h^u = g Σ_{v≠u} Λ^(uv)·X^v_00 (zero for dressed members: their basis already
  diagonalizes it);
* W^(uv) = 2gΛ^(uv) (K×K; with dipoles blockdiag(2gΛ, 2g_e μ̂)), so that
  V = Σ_{u<v} X^u·W^(uv)·X^v = E_c + Σ_u 2h^u·δX^u + Σ_{u<v} δX^u·W^(uv)·δX^v.

**First-order states** (Eq. 3.2): |f̃⟩ = |f⟩ + Σ_{x≠f} c_xf |x⟩, c_xf = ⟨x|V|f⟩/(E_f − E_x). For a
single excitation f = |t,p⟩ the non-zero c_xf are

* [A] the ground:           ⟨0|V|t,p⟩ = U^t_0p,                      E_f − E_x = E^t_p;
* [B] |t,q⟩ (q ≠ p):         U^t_qp,                                   E^t_p − E^t_q;
* [C] |v,q⟩ (v ≠ t):         X^v_q0·W^(vt)·X^t_0p,                     E^t_p − E^v_q;
* [D] |t,q; v,r⟩ (v ≠ t):    δ_qp U^v_r0 + δX^t_qp·W^(tv)·X^v_r0,      E^t_p − E^t_q − E^v_r.

**The kept stress block** (BRIEF §1.5: the operator handed to the next RG step) between single
excitations f1 = |s,m⟩ and f2 = |t,p⟩ is, to first order in g,

    ⟨f̃1|T_tot|f̃2⟩ = Z(f1, f2) + Y(f1, f2) + Y(f2, f1),   Y(f1, f2) = Σ_x ⟨f1|T_tot|x⟩ c_x,f2,

with Z the zeroth order (T^s_mp on one member, Σ_u T^u_00 − T^s_00 + T^s_mm on the diagonal, 0
between members) and, using ⟨s,m|T_tot|s,q⟩ → δT^s_mq (the Σ_u T^u_00 part of the diagonal
cancels between Y(f1, f2) and Y(f2, f1)):

* s = t:  Y = T^s_m0 U^s_0p/E^s_p + Σ_{q≠p} δT^s_mq U^s_qp/(E^s_p − E^s_q)
          + Σ_{v≠s, r} T^v_0r [δ_mp U^v_r0 + δX^s_mp·W^(sv)·X^v_r0]/(E^s_p − E^s_m − E^v_r);
* s ≠ t:  Y = T^s_m0 U^t_0p/E^t_p + Σ_q δT^s_mq [X^s_q0·W^(st)·X^t_0p]/(E^t_p − E^s_q)
          + Σ_q T^t_0q [δ_qp U^s_m0 + δX^t_qp·W^(ts)·X^s_m0]/(E^t_p − E^t_q − E^s_m).

The last sum of the s = t case holds the other members' ground admixture that makes
⟨α|T|α⟩ − ⟨0|T|0⟩ first order; the s ≠ t case gives the elements between excitations on different
members. Terms whose coupling exceeds ``thr`` times their denominator are resonances: they are
treated exactly inside their cluster and left out here (the same rule as everywhere in the solver).
For the [D] couplings the test uses the two-body part δX·W·X only: the one-body part δ_qp U is the
member's mean-field admixture, the same as in the ground state, and members where it is large are
dressed exactly instead.
Elements that involve a double excitation (which only enters a kept state through a resonant
cluster) are taken at zeroth order, with the first-order ⟨0|T_tot|0⟩ as their constant part.

**Single–double resonances** (n ≥ 3, BRIEF §1b): |t,p⟩ couples to |t,q; s,m⟩ through [D] and is
resonant with it when E^t_p ≈ E^t_q + E^s_m. :func:`single_double_resonances` finds every pair with
|δX^t_qp·W^(ts)·X^s_m0| > thr·|ΔE| (a numba kernel: a norm bound screens each candidate in O(1), survivors are computed
exactly), and the solver diagonalizes the clusters with the doubles included. A double in a
cluster has the first-order energy ω^s_k + ω^t_p + δX^s_kk·W^(st)·δX^t_pp and the first-order
ground-row amplitude of :func:`double_amplitude`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from .._numba import serial_twin

__all__ = ["FirstOrderContext", "single_double_resonances", "double_energy", "double_amplitude", "double_amplitude_into",
           "rotate_operators",
           "single_element", "node_element", "quadratic_form"]


@dataclass
class FirstOrderContext:
    """Effective member arrays shared by the first-order formulas (see the module docstring).

    e: float64 [N, n] levels (ground 0, units E*); x: float64 [N, K, n, n] operators (stress first);
    u1: float64 [N, n, n] off-diagonal one-body perturbation U (zero diagonal, zero for dressed
    members); table: float64 [2n0−1]³×[K, K] coupling per displacement with the coupling constants
    folded in as ``g_table·table``; positions int64 [N, 3]; thr: resonance threshold;
    ground_t: float64 [6] first-order ⟨0|T_tot|0⟩.
    """

    e: np.ndarray
    x: np.ndarray
    u1: np.ndarray
    table: np.ndarray
    g_table: float
    positions: np.ndarray
    n0: int
    thr: float
    ground_t: np.ndarray
    dx: np.ndarray = field(init=False, repr=False)
    total_t0: np.ndarray = field(init=False, repr=False)
    _rows: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        self.dx = self.x.copy()
        nl = self.x.shape[-1]
        for a in range(nl):
            self.dx[:, :, a, a] -= self.x[:, :, 0, 0]
        self.total_t0 = self.x[:, :6, 0, 0].sum(axis=0)

    def w_pair(self, s: int, t: int) -> np.ndarray:
        """W^(st) = 2·(g Λ^(st)) ``[K, K]`` (zero for s = t)."""
        if s == t:
            return np.zeros(self.table.shape[-2:])
        d = self.positions[s] - self.positions[t] + self.n0 - 1
        return 2.0 * self.g_table * self.table[d[0], d[1], d[2]]

    def w_row(self, s: int) -> np.ndarray:
        """W^(sv) for every member v ``[N, K, K]`` (W^(ss) = 0), cached per member."""
        if s not in self._rows:
            d = self.positions[s][None, :] - self.positions + self.n0 - 1
            w = 2.0 * self.g_table * self.table[d[:, 0], d[:, 1], d[:, 2]]
            w[s] = 0.0
            self._rows[s] = w
        return self._rows[s]


def _keep(num, den, thr):
    """Mask of non-resonant terms: |num| ≤ thr·|den| (a term with num = 0 contributes nothing)."""
    return ~((np.abs(num) > thr * np.abs(den)) & (num != 0.0))


def _safe_ratio(num, den, keep):
    return np.where(keep, num / np.where(keep & (den != 0.0), den, 1.0), 0.0) * (den != 0.0)


def _y_reference(ctx: FirstOrderContext, s: int, m: int, t: int, p: int) -> np.ndarray:
    """Y(f1, f2) = Σ_x ⟨s,m|T_tot|x⟩ c_x,(t,p) (module docstring), a Mandel 6-vector (NumPy reference)."""
    e, x, dx, u1, thr = ctx.e, ctx.x, ctx.dx, ctx.u1, ctx.thr
    nl = e.shape[1]
    out = np.zeros(6)
    # [A] the ground state's component of |δf2⟩
    if u1[t, 0, p] != 0.0:
        out += x[s, :6, m, 0] * (u1[t, 0, p] / e[t, p])
    if s == t:
        # [B] one-body mixing of the member's own levels
        for q in range(1, nl):
            if q != p and u1[s, q, p] != 0.0 and e[s, p] != e[s, q]:
                out += dx[s, :6, m, q] * (u1[s, q, p] / (e[s, p] - e[s, q]))
        # [D] doubles |s,m; v,r⟩: the other members' admixture
        w = ctx.w_row(s)
        xr0 = x[:, :, 1:, 0]  # [N, K, n−1] X^v_r0
        two_body = np.einsum("a,vab,vbr->vr", dx[s, :, m, p], w, xr0)
        two_body[s] = 0.0
        num = two_body + u1[:, 1:, 0] if m == p else two_body
        num[s] = 0.0
        den = e[s, p] - e[s, m] - e[:, 1:]
        coef = _safe_ratio(num, den, _keep(two_body, den, thr))
        out += np.einsum("vr,var->a", coef, x[:, :6, 0, 1:])
        return out
    w = ctx.w_pair(s, t)
    # [C] singles |s,q⟩ (q = m: the direct mixing of f1 and f2)
    v_c = np.einsum("qa,ab,b->q", x[s, :, 1:, 0].T, w, x[t, :, 0, p])
    den_c = e[t, p] - e[s, 1:]
    coef_c = _safe_ratio(v_c, den_c, _keep(v_c, den_c, thr))
    out += np.einsum("q,aq->a", coef_c, dx[s, :6, m, 1:])
    # [D] doubles |t,q; s,m⟩
    two_body = np.einsum("aq,ab,b->q", dx[t, :, 1:, p], w.T, x[s, :, m, 0])
    num_d = two_body.copy()
    num_d[p - 1] += u1[s, m, 0]
    den_d = e[t, p] - e[t, 1:] - e[s, m]
    coef_d = _safe_ratio(num_d, den_d, _keep(two_body, den_d, thr))
    out += np.einsum("q,aq->a", coef_d, x[t, :6, 0, 1:])
    return out


@numba.njit(cache=True, nogil=True)
def _y_kernel(s, m, t, p, e, x, dx, u1, pos, table, n0, g2, thr, out):
    """out[:6] += Y(f1, f2) for f1 = (s, m), f2 = (t, p) (module docstring; numba twin of the reference).

    e float64 [N, n]; x, dx float64 [N, K, n, n]; u1 float64 [N, n, n]; pos int64 [N, 3]; table float64
    [2n0−1]³×[K, K]; g2 = 2·g_table (W = g2·table); out float64 [6]. Serial, fixed summation order.
    """
    nb, nc, nl = x.shape[0], x.shape[1], x.shape[2]
    off = n0 - 1
    if u1[t, 0, p] != 0.0:
        c = u1[t, 0, p] / e[t, p]
        for a in range(6):
            out[a] += x[s, a, m, 0] * c
    if s == t:
        for q in range(1, nl):
            if q != p and u1[s, q, p] != 0.0 and e[s, p] != e[s, q]:
                c = u1[s, q, p] / (e[s, p] - e[s, q])
                for a in range(6):
                    out[a] += dx[s, a, m, q] * c
        y = np.empty(nc)
        for v in range(nb):
            if v == s:
                continue
            ix = pos[s, 0] - pos[v, 0] + off
            iy = pos[s, 1] - pos[v, 1] + off
            iz = pos[s, 2] - pos[v, 2] + off
            for b in range(nc):
                acc = 0.0
                for a in range(nc):
                    acc += dx[s, a, m, p] * table[ix, iy, iz, a, b]
                y[b] = g2 * acc
            for r in range(1, nl):
                two_body = 0.0
                for b in range(nc):
                    two_body += y[b] * x[v, b, r, 0]
                num = two_body + u1[v, r, 0] if m == p else two_body
                den = e[s, p] - e[s, m] - e[v, r]
                if num == 0.0 or den == 0.0 or abs(two_body) > thr * abs(den):
                    continue
                c = num / den
                for a in range(6):
                    out[a] += x[v, a, 0, r] * c
        return
    ix = pos[s, 0] - pos[t, 0] + off
    iy = pos[s, 1] - pos[t, 1] + off
    iz = pos[s, 2] - pos[t, 2] + off
    # wt[a] = Σ_b W^(st)_ab X^t_0p,b ; ws[b] = Σ_a W^(st)_ab X^s_m0,a (W^(ts) = W^(st)ᵀ)
    wt = np.zeros(nc)
    ws = np.zeros(nc)
    for a in range(nc):
        for b in range(nc):
            w = g2 * table[ix, iy, iz, a, b]
            wt[a] += w * x[t, b, 0, p]
            ws[b] += w * x[s, a, m, 0]
    for q in range(1, nl):
        v = 0.0
        for a in range(nc):
            v += x[s, a, q, 0] * wt[a]
        den = e[t, p] - e[s, q]
        if v != 0.0 and den != 0.0 and not abs(v) > thr * abs(den):
            c = v / den
            for a in range(6):
                out[a] += dx[s, a, m, q] * c
        two_body = 0.0
        for b in range(nc):
            two_body += dx[t, b, q, p] * ws[b]
        num = two_body + u1[s, m, 0] if q == p else two_body
        den = e[t, p] - e[t, q] - e[s, m]
        if num != 0.0 and den != 0.0 and not abs(two_body) > thr * abs(den):
            c = num / den
            for a in range(6):
                out[a] += x[t, a, 0, q] * c


def single_element(ctx: FirstOrderContext, s: int, m: int, t: int, p: int, *, use_kernels: bool = True) -> np.ndarray:
    """⟨s̃,m|T_tot|t̃,p⟩ to first order in g (module docstring), Mandel 6-vector, units T*.

    ``use_kernels=False`` evaluates Y with the NumPy reference instead of :func:`_y_kernel`.
    """
    x = ctx.x
    if s == t:
        z = ctx.total_t0 - x[s, :6, 0, 0] + x[s, :6, m, m] if m == p else x[s, :6, m, p].copy()
    else:
        z = np.zeros(6)
    if not use_kernels:
        return z + _y_reference(ctx, s, m, t, p) + _y_reference(ctx, t, p, s, m)
    out = np.array(z, dtype=float)
    args = (ctx.e, ctx.x, ctx.dx, ctx.u1, ctx.positions, ctx.table, ctx.n0, 2.0 * ctx.g_table, ctx.thr, out)
    _y_kernel(s, m, t, p, *args)
    _y_kernel(t, p, s, m, *args)
    return out


def node_element(ctx: FirstOrderContext, a, b) -> np.ndarray:
    """⟨a|T_tot|b⟩ between basis nodes: ``(s, m)`` singles or ``(s, k, t, p)`` doubles (s < t).

    Single–single elements are first order (:func:`single_element`); elements with a double are
    zeroth order with the first-order ⟨0|T_tot|0⟩ as their constant part (module docstring).
    """
    if len(a) == 2 and len(b) == 2:
        return single_element(ctx, a[0], a[1], b[0], b[1])
    if len(a) == 4 and len(b) == 2:
        a, b = b, a
    x = ctx.x
    if len(a) == 2:  # single–double: T lowers the double's other member to its ground
        s, m = a
        u, lu, v, lv = b
        if s == u and m == lu:
            return x[v, :6, 0, lv].copy()
        if s == v and m == lv:
            return x[u, :6, 0, lu].copy()
        return np.zeros(6)
    occ_a = {a[0]: a[1], a[2]: a[3]}
    occ_b = {b[0]: b[1], b[2]: b[3]}
    members = sorted(set(occ_a) | set(occ_b))
    differ = [u for u in members if occ_a.get(u, 0) != occ_b.get(u, 0)]
    if not differ:
        out = ctx.ground_t.copy()
        for u, lu in occ_a.items():
            out += x[u, :6, lu, lu] - x[u, :6, 0, 0]
        return out
    if len(differ) == 1:
        u = differ[0]
        return x[u, :6, occ_a.get(u, 0), occ_b.get(u, 0)].copy()
    return np.zeros(6)


# ----------------------------------------------------------------------------------------------
# Single–double resonances
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, parallel=True)
def _single_double_kernel_parallel(pos, table, tnorm, n0, g2, e, x, dx, u1, thr, xnorm, offsets, fill,
                                   out_single, out_double, out_v, counts):
    """Resonant single–double pairs (|t,p⟩, |t,q; s,m⟩): |δX^t_qp·W^(ts)·X^s_m0| > thr·|E^t_p − E^t_q − E^s_m|.

    Writes V = δ_qp U^s_m0 + δX^t_qp·W^(ts)·X^s_m0 with W = g2·table. Each candidate is first screened
    with |δX·W·X| ≤ ‖δX^t_qp‖·g2·tnorm[d]·xnorm[s, m] (tnorm: Frobenius norm of each table entry),
    then computed exactly. ``fill=False``: counts[t] = number of pairs of single member t.
    ``fill=True``: writes them at offsets[t]: (flat single t·(n−1) + p − 1, double (t, q, s, m), V),
    in ascending (p, q, s, m) order. prange over t: the output does not depend on the thread count.
    pos int64 [N, 3]; table float64 [2n0−1]³×[K, K]; tnorm float64 [2n0−1]³; e float64 [N, n];
    x, dx float64 [N, K, n, n]; u1 float64 [N, n, n]; xnorm float64 [N, n] (‖X^s_m0‖).
    """
    nb, nc, nl = x.shape[0], x.shape[1], x.shape[2]
    off = n0 - 1
    for t in numba.prange(nb):
        if fill and counts[t] == 0:
            continue
        k = offsets[t] if fill else 0
        ws = np.empty(nc)
        for p in range(1, nl):
            for q in range(1, nl):
                dxn = 0.0
                for a in range(nc):
                    dxn += dx[t, a, q, p] * dx[t, a, q, p]
                dxn = np.sqrt(dxn) * g2
                target = e[t, p] - e[t, q]
                for s_ in range(nb):
                    if s_ == t:
                        continue
                    ix = pos[t, 0] - pos[s_, 0] + off
                    iy = pos[t, 1] - pos[s_, 1] + off
                    iz = pos[t, 2] - pos[s_, 2] + off
                    tn = dxn * tnorm[ix, iy, iz]
                    for m in range(1, nl):
                        den = target - e[s_, m]
                        if not tn * xnorm[s_, m] > thr * abs(den):
                            continue
                        for b in range(nc):
                            acc = 0.0
                            for a in range(nc):
                                acc += dx[t, a, q, p] * table[ix, iy, iz, a, b]
                            ws[b] = g2 * acc
                        two_body = 0.0
                        for b in range(nc):
                            two_body += ws[b] * x[s_, b, m, 0]
                        v = two_body + u1[s_, m, 0] if q == p else two_body
                        if two_body != 0.0 and abs(two_body) > thr * abs(den):
                            if fill:
                                out_single[k] = t * (nl - 1) + p - 1
                                out_double[k, 0] = t
                                out_double[k, 1] = q
                                out_double[k, 2] = s_
                                out_double[k, 3] = m
                                out_v[k] = v
                            k += 1
        if not fill:
            counts[t] = k


_single_double_kernel_serial = serial_twin(_single_double_kernel_parallel)


def single_double_resonances(ctx: FirstOrderContext, *, use_kernels: bool = True):
    """Every resonant single–double pair (|t,p⟩, |t,q; s,m⟩): |δX^t_qp·W^(ts)·X^s_m0| > thr·|E^t_p − E^t_q − E^s_m|.

    The coupling returned is the whole V = δ_qp U^s_m0 + δX^t_qp·W^(ts)·X^s_m0 ([D] of the module
    docstring); the test uses its two-body part (module docstring). Checked for every
    t, p, q ≥ 1 and s ≠ t, m ≥ 1 (numba kernel, O(N² n³) cheap screens; ``use_kernels=False`` runs
    the plain NumPy reference, O(N² n³) memory).

    Returns ``(single [M] int64, double [M, 4] int64, v [M] float64)``: the flat single index
    t·(n−1) + p − 1, the double as (t, q, s, m) and the coupling V, ordered by (t, p, q, s, m).
    """
    e, x, dx, u1, thr = ctx.e, ctx.x, ctx.dx, ctx.u1, ctx.thr
    nb, nl = e.shape
    if not use_kernels:
        return _single_double_reference(ctx)
    g2 = 2.0 * ctx.g_table
    tnorm = np.sqrt(np.sum(ctx.table**2, axis=(-2, -1)))
    xnorm = np.sqrt(np.sum(x[:, :, :, 0] ** 2, axis=1))
    kernel = _single_double_kernel_parallel if nb * nb * (nl - 1) ** 3 >= 100_000 else _single_double_kernel_serial
    counts = np.zeros(nb, dtype=np.int64)
    dummy_i = np.zeros(0, dtype=np.int64)
    kernel(ctx.positions, ctx.table, tnorm, ctx.n0, g2, e, x, dx, u1, thr, xnorm, counts, False,
           dummy_i, np.zeros((0, 4), dtype=np.int64), np.zeros(0), counts)
    total = int(counts.sum())
    single = np.empty(total, dtype=np.int64)
    double = np.empty((total, 4), dtype=np.int64)
    v = np.empty(total)
    if total:
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        kernel(ctx.positions, ctx.table, tnorm, ctx.n0, g2, e, x, dx, u1, thr, xnorm, offsets, True,
               single, double, v, counts)
    return single, double, v


def _single_double_reference(ctx: FirstOrderContext):
    """Plain NumPy reference of :func:`single_double_resonances` (all (t, p, q, s, m) at once)."""
    e, x, dx, u1, thr = ctx.e, ctx.x, ctx.dx, ctx.u1, ctx.thr
    nb, nl = e.shape
    t, p, q, s_, m = np.meshgrid(np.arange(nb), np.arange(1, nl), np.arange(1, nl), np.arange(nb),
                                 np.arange(1, nl), indexing="ij")
    t, p, q, s_, m = (a.ravel() for a in (t, p, q, s_, m))
    keep = t != s_
    t, p, q, s_, m = t[keep], p[keep], q[keep], s_[keep], m[keep]
    d = ctx.positions[t] - ctx.positions[s_] + ctx.n0 - 1
    w = 2.0 * ctx.g_table * ctx.table[d[:, 0], d[:, 1], d[:, 2]]
    two_body = np.einsum("ma,mab,mb->m", dx[t, :, q, p], w, x[s_, :, m, 0])
    v = two_body + np.where(q == p, u1[s_, m, 0], 0.0)
    den = e[t, p] - e[t, q] - e[s_, m]
    res = ~_keep(two_body, den, thr)
    single = t[res] * (nl - 1) + p[res] - 1
    double = np.stack([t[res], q[res], s_[res], m[res]], axis=1)
    return single.astype(np.int64), double.astype(np.int64), v[res]


@numba.njit(cache=True, nogil=True)
def quadratic_form(a, w, b):
    """a·W·b = Σ_i a_i (Σ_j W_ij b_j) in this fixed order (float64 [K], [K, K], [K]; no BLAS, so the
    batched solver, :mod:`blocksim.spectra.batch`, reproduces it bit for bit)."""
    out = 0.0
    for i in range(a.shape[0]):
        acc = 0.0
        for j in range(b.shape[0]):
            acc += w[i, j] * b[j]
        out += a[i] * acc
    return out


@numba.njit(cache=True, nogil=True)
def rotate_operators(c, x, out):
    """out[d, a] = c[d]ᵀ·x[d, a]·c[d] for every d: c [D, n, n], x [D, K, n, n] → out [D, K, n, n].

    out[d, a, i, j] = Σ_m Σ_k c_mi x_amk c_kj, summed over m then k in this order (the element order
    of ``np.einsum("mi,amn,nj->aij", c, x, c)``; tests/test_batch.py). The dressed-member basis of
    the perturbative solver (``perturbative._dress_one_body``) and of the batched one (``batch._dress``).
    """
    n = c.shape[1]
    for d in range(c.shape[0]):
        for a in range(x.shape[1]):
            for i in range(n):
                for j in range(n):
                    acc = 0.0
                    for m in range(n):
                        for k in range(n):
                            acc += c[d, m, i] * x[d, a, m, k] * c[d, k, j]
                    out[d, a, i, j] = acc
    return out


def double_energy(ctx: FirstOrderContext, omega, s: int, k: int, t: int, p: int) -> float:
    """First-order excitation energy of |s,k; t,p⟩: ω^s_k + ω^t_p + δX^s_kk·W^(st)·δX^t_pp (units E*).

    ``omega [N, n]``: the members' first-order single-excitation energies (perturbative solver).
    """
    w = ctx.w_pair(s, t)
    return float(omega[s, k] + omega[t, p] + quadratic_form(ctx.dx[s, :, k, k], w, ctx.dx[t, :, p, p]))


def double_amplitude(ctx: FirstOrderContext, s: int, k: int, t: int, p: int) -> np.ndarray:
    """First-order ⟨s̃,k; t,p|T_tot|0̃⟩ (zero at zeroth order: T_tot is one-body), Mandel 6-vector.

    With E_d = E^s_k + E^t_p and W = W^(st) (derived from Eq. 3.2; the one-body terms cancel):

        Σ_r T^s_r0 [δX^s_rk·W·X^t_0p]/(E_d − E^s_r) − δT^s_kr [X^s_r0·W·X^t_p0]/(E^s_r + E^t_p)
      + Σ_r T^t_r0 [X^s_0k·W·δX^t_rp]/(E_d − E^t_r) − δT^t_pr [X^s_k0·W·X^t_r0]/(E^s_k + E^t_r)

    (r ≥ 1). A term of the first kind whose two-body coupling exceeds thr·|E_d − E^s_r| is the
    resonance with |s,r⟩ (resp. |t,r⟩), treated in the cluster, and left out.

    The numba kernel :func:`double_amplitude_into` (shared with the batched solver, so both are bit for
    bit the same); :func:`_double_amplitude_reference` is the NumPy reference.
    """
    out = np.zeros(6)
    double_amplitude_into(ctx.e, ctx.x, ctx.dx, ctx.w_pair(s, t), ctx.thr, s, k, t, p, out)
    return out


def _double_amplitude_reference(ctx: FirstOrderContext, s: int, k: int, t: int, p: int) -> np.ndarray:
    """:func:`double_amplitude` with NumPy ``einsum`` (the slow, obvious reference of the kernel)."""
    e, x, dx, u1, thr = ctx.e, ctx.x, ctx.dx, ctx.u1, ctx.thr
    w = ctx.w_pair(s, t)
    e_d = e[s, k] + e[t, p]
    out = np.zeros(6)
    # member s changes level (|s,r⟩ admixture of the double; doubles |s,r; t,p⟩ in the ground)
    num = np.einsum("ar,ab,b->r", dx[s, :, 1:, k], w, x[t, :, 0, p])
    den = e_d - e[s, 1:]
    keep = _keep(num, den, thr)
    out += np.einsum("r,ar->a", _safe_ratio(num, den, keep), x[s, :6, 1:, 0])
    num2 = np.einsum("ar,ab,b->r", x[s, :, 1:, 0], w, x[t, :, p, 0])
    out -= np.einsum("r,ar->a", num2 / (e[s, 1:] + e[t, p]), dx[s, :6, k, 1:])
    # member t changes level
    num = np.einsum("a,ab,br->r", x[s, :, 0, k], w, dx[t, :, 1:, p])
    den = e_d - e[t, 1:]
    keep = _keep(num, den, thr)
    out += np.einsum("r,ar->a", _safe_ratio(num, den, keep), x[t, :6, 1:, 0])
    num2 = np.einsum("a,ab,br->r", x[s, :, k, 0], w, x[t, :, 1:, 0])
    out -= np.einsum("r,ar->a", num2 / (e[s, k] + e[t, 1:]), dx[t, :6, p, 1:])
    return out


@numba.njit(cache=True, nogil=True)
def _ratio_kept(num, den, thr):
    """num/den for a non-resonant term (|num| ≤ thr·|den| or num = 0) with den ≠ 0, else 0 (:func:`_safe_ratio`)."""
    if abs(num) > thr * abs(den) and num != 0.0:
        return 0.0
    if den == 0.0:
        return 0.0
    return num / den


@numba.njit(cache=True, nogil=True)
def _excited_sum(c, v):
    """Σ_{r ≥ 1} c[r]·v[r], summed in order."""
    acc = 0.0
    for r in range(1, c.shape[0]):
        acc += c[r] * v[r]
    return acc


@numba.njit(cache=True, nogil=True)
def double_amplitude_into(e, x, dx, w, thr, s, k, t, p, out):
    """out[:6] = first-order ⟨s̃,k; t,p|T_tot|0̃⟩ (:func:`double_amplitude`), sums in a fixed order.

    e [N, n], x and dx [N, K, n, n], w = W^(st) [K, K]. Each coupling is a :func:`quadratic_form`; each
    of the four terms is summed over r ≥ 1 before it is added to ``out``.
    """
    double_amplitude_scratch(e, x, dx, w, thr, s, k, t, p, out, np.empty((4, e.shape[1])))


@numba.njit(cache=True, nogil=True)
def double_amplitude_scratch(e, x, dx, w, thr, s, k, t, p, out, scratch):
    """:func:`double_amplitude_into` with its four coefficient rows in ``scratch [4, n]`` (no allocation)."""
    nl = e.shape[1]
    e_d = e[s, k] + e[t, p]
    for a in range(6):
        out[a] = 0.0
    c1 = scratch[0]
    c2 = scratch[1]
    c3 = scratch[2]
    c4 = scratch[3]
    for r in range(1, nl):
        c1[r] = _ratio_kept(quadratic_form(dx[s, :, r, k], w, x[t, :, 0, p]), e_d - e[s, r], thr)
        c2[r] = quadratic_form(x[s, :, r, 0], w, x[t, :, p, 0]) / (e[s, r] + e[t, p])
        c3[r] = _ratio_kept(quadratic_form(x[s, :, 0, k], w, dx[t, :, r, p]), e_d - e[t, r], thr)
        c4[r] = quadratic_form(x[s, :, k, 0], w, x[t, :, r, 0]) / (e[s, k] + e[t, r])
    for a in range(6):
        out[a] += _excited_sum(c1, x[s, a, :, 0])
        out[a] -= _excited_sum(c2, dx[s, a, k, :])
        out[a] += _excited_sum(c3, x[t, a, :, 0])
        out[a] -= _excited_sum(c4, dx[t, a, p, :])
