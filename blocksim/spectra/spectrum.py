"""The solver output: :class:`Spectrum` (low-lying states, amplitudes, transitions, truncation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse

from ..errors import InputError
from ..response import Transitions, boltzmann, transitions_from_levels
from .superblock import SuperBlock, _int_field

__all__ = ["Spectrum", "carrier_weights", "carrier_weights_into", "eigh_pair", "rotate_rows"]


# ----------------------------------------------------------------------------------------------
# Spectrum (solver output)
# ----------------------------------------------------------------------------------------------
def carrier_weights(prob, occupation, single):
    """Member weights of states for the populations of their ground → state lines (DESIGN note 2).

    ``prob [..., K, M]``: |coefficient|² of each state (row) on each basis node; ``occupation [..., M, N]``:
    each node's excited members; ``single [..., M]``: the nodes with one excited member. A ground → state
    line gets the population Σ_i |c_i|² p_0^(s_i) / Σ_i |c_i|² over the state's **single** nodes: only they
    carry a zeroth-order amplitude from the ground (the stress is one-body), and the part of the state
    on a double |t,q; s,m⟩ is reached from the thermally excited |s,m⟩, a line at the same frequency to
    within E_m^(s) that the independent-excitation sum already counts with p_0^(t). Weighting the double's
    members too (as before) took p_0^(s) of a soft member into the line and lost band weight
    (docs/findings.md). A state with no single component keeps the weights of all its nodes.
    """
    prob = np.asarray(prob, dtype=float)
    occupation = np.asarray(occupation, dtype=float)
    single = np.asarray(single, dtype=bool)
    lead = prob.shape[:-2]
    k, m = prob.shape[-2:]
    n = occupation.shape[-1]
    out = np.empty((int(np.prod(lead, dtype=np.int64)), k, n))
    _carrier_weights_kernel(np.ascontiguousarray(prob).reshape(-1, k, m),
                            np.ascontiguousarray(np.broadcast_to(occupation, lead + (m, n))).reshape(-1, m, n),
                            np.ascontiguousarray(np.broadcast_to(single, lead + (m,))).reshape(-1, m), out)
    return out.reshape(lead + (k, n))


@numba.njit(cache=True, nogil=True)
def _carrier_weights_kernel(prob, occ, single, out):
    """:func:`carrier_weights` on [B, K, M], [B, M, N], [B, M]."""
    for b in range(prob.shape[0]):
        carrier_weights_into(prob[b], occ[b], single[b], out[b])


@numba.njit(cache=True, nogil=True)
def carrier_weights_into(prob, occ, single, out):
    """:func:`carrier_weights` of one set of states: prob [K, M], occ [M, N], single [M] → out [K, N].

    Each weight is summed over the nodes m in order (the batched solver calls this per cluster).
    """
    for k in range(prob.shape[0]):
        positive = False
        for n in range(occ.shape[1]):
            acc = 0.0
            for m in range(prob.shape[1]):
                if single[m]:
                    acc += prob[k, m] * occ[m, n]
            out[k, n] = acc
            positive = positive or acc > 0
        if not positive:  # no single component: the weights of all its nodes
            for n in range(occ.shape[1]):
                acc = 0.0
                for m in range(prob.shape[1]):
                    acc += prob[k, m] * occ[m, n]
                out[k, n] = acc


@numba.njit(cache=True, nogil=True)
def eigh_pair(a):
    """Eigenpairs of a real symmetric matrix (lower triangle read): ``(w ascending, v with eigenvectors as columns)``.

    The one eigen-solver of resonant clusters and dressed members in the perturbative and batched solvers,
    so both give the same numbers bit for bit. Sizes 2 and 3 (half of the clusters, and the members
    of n = 3 blocks) are solved by plane (Jacobi) rotations, :func:`_jacobi_small`, about 3× faster than
    LAPACK's set-up at these sizes; larger ones by ``np.linalg.eigh`` (LAPACK ``syevd``). Eigenvalues agree
    with LAPACK to rounding and the eigenvectors up to sign (tests/test_spectrum.py).
    """
    n = a.shape[0]
    if n == 2 or n == 3:
        v = np.empty((n, n)).T  # Fortran order, as LAPACK's
        w = np.empty(n)
        _jacobi_small(a, w, v)
        return w, v
    return np.linalg.eigh(a)


@numba.njit(cache=True, nogil=True)
def _jacobi_small(a, w, v):
    """Cyclic Jacobi for a small symmetric ``a`` (lower triangle): w ascending, v columns (Golub & Van Loan §8.5).

    Each rotation annihilates one off-diagonal element with t = sgn(θ)/(|θ| + √(1 + θ²)), θ = (a_qq − a_pp)/2a_pq
    (t = 1/(2θ) when θ² would overflow); an element negligible against both diagonal elements is dropped. For
    n = 2 one rotation is exact; for n = 3 the sweeps stop when the off-diagonal part is zero.
    """
    n = a.shape[0]
    h = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            h[i, j] = a[max(i, j), min(i, j)]
            v[i, j] = 1.0 if i == j else 0.0
    for sweep in range(100):
        off = 0.0
        for p in range(n - 1):
            for q in range(p + 1, n):
                off += abs(h[p, q])
        if off == 0.0:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = h[p, q]
                if apq == 0.0:
                    continue
                app, aqq = h[p, p], h[q, q]
                big = 100.0 * abs(apq)
                if sweep > 3 and abs(app) + big == abs(app) and abs(aqq) + big == abs(aqq):
                    h[p, q] = 0.0
                    h[q, p] = 0.0
                    continue
                d = aqq - app
                if abs(d) + big == abs(d):
                    t = apq / d
                else:
                    theta = 0.5 * d / apq
                    t = 1.0 / (abs(theta) + np.sqrt(1.0 + theta * theta))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / np.sqrt(1.0 + t * t)
                s = t * c
                tau = s / (1.0 + c)
                h[p, p] = app - t * apq
                h[q, q] = aqq + t * apq
                h[p, q] = 0.0
                h[q, p] = 0.0
                for r in range(n):
                    if r != p and r != q:
                        hrp, hrq = h[r, p], h[r, q]
                        h[r, p] = h[p, r] = hrp - s * (hrq + tau * hrp)
                        h[r, q] = h[q, r] = hrq + s * (hrp - tau * hrq)
                for r in range(n):
                    vrp, vrq = v[r, p], v[r, q]
                    v[r, p] = vrp - s * (vrq + tau * vrp)
                    v[r, q] = vrq + s * (vrp - tau * vrq)
    for i in range(n):
        w[i] = h[i, i]
    for i in range(1, n):  # ascending, columns along (stable insertion sort)
        j = i
        while j > 0 and w[j - 1] > w[j]:
            w[j - 1], w[j] = w[j], w[j - 1]
            for r in range(n):
                v[r, j - 1], v[r, j] = v[r, j], v[r, j - 1]
            j -= 1


@numba.njit(cache=True, nogil=True)
def rotate_rows(vec_t, amp, out):
    """out[b] = vec_t[b] @ amp[b] ([B, K, M] × [B, M, A] → [B, K, A]), summed over m in order.

    A resonant cluster's ground-row amplitudes in its eigenbasis, in the perturbative and batched solvers.
    """
    for b in range(vec_t.shape[0]):
        for i in range(vec_t.shape[1]):
            for a in range(amp.shape[2]):
                acc = 0.0
                for m in range(vec_t.shape[2]):
                    acc += vec_t[b, i, m] * amp[b, m, a]
                out[b, i, a] = acc
    return out


@dataclass
class Spectrum:
    """Low-lying spectrum of a super block (H of Eq. 2.16 of [ZL]; first order: Eq. 3.2).

    energies: float64 [K], excitation energies ascending, energies[0] = 0 (the ground state), units E*.
    amp0: float64 [K, 6], ⟨α|T_tot|0⟩ (amp0[0] = ⟨0|T_tot|0⟩), Mandel, units T*.
    method: the solver name; diagnostics: counts and scalars (see :func:`solve`).
    """

    energies: np.ndarray
    amp0: np.ndarray
    method: str
    diagnostics: dict
    _sb: SuperBlock = field(repr=False)
    _excited_stress: object = field(repr=False)  # callable idx -> [6, k, k]
    _pop_weights: np.ndarray | None = field(repr=False, default=None)  # [K, N] or None (Boltzmann)
    _full_stress: np.ndarray | None = field(repr=False, default=None)  # [6, K, K] for dense solvers
    #: int64 [K, N]: the product configuration (level of each member) with the largest weight in
    #: each state, for matching states between solvers.
    labels: np.ndarray | None = field(repr=False, default=None)
    #: (energies [N, n], stress [N, 6, n, n]) of the members as used for excited-state quantities
    #: (the perturbative solver dresses members with a one-body resonance); None: the raw members.
    _members: tuple | None = field(repr=False, default=None)
    #: bool [K]: state α is in a resonant cluster or is an excitation of a dressed member (perturbative
    #: solver); None: no resonance treatment (every state counts as non-resonant).
    resonant_states: np.ndarray | None = field(repr=False, default=None)
    #: bool [N, n−1]: single excitation |s,m⟩ (m = 1..n−1) lies in a resonant cluster or member s is
    #: dressed (perturbative solver); None: none.
    resonant_singles: np.ndarray | None = field(repr=False, default=None)
    #: bool [N]: members diagonalized exactly in their local field (perturbative solver); None: none.
    dressed_members: np.ndarray | None = field(repr=False, default=None)
    #: bool [K] and [N, n−1]: the states and single excitations in a resonant cluster (a subset of
    #: ``resonant_states`` and ``resonant_singles``; the rest of those are dressed members'); None: none.
    cluster_states: np.ndarray | None = field(repr=False, default=None)
    cluster_singles: np.ndarray | None = field(repr=False, default=None)
    #: bool [K] and [N, n−1]: the part of those in a cluster that holds a double excitation (a
    #: single–double resonance); None: none.
    double_cluster_states: np.ndarray | None = field(repr=False, default=None)
    double_cluster_singles: np.ndarray | None = field(repr=False, default=None)

    @property
    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """Member levels and stress used by this spectrum: ``(energies [N, n], stress [N, 6, n, n])``."""
        if self._members is not None:
            return self._members
        return self._sb.energies, self._sb.stress

    def stress_block(self, idx) -> np.ndarray:
        """Matrix elements ⟨α|T_tot,a|β⟩ ``[6, k, k]`` among the states ``idx`` (must include 0 first)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self._full_stress is not None:
            return self._full_stress[:, idx[:, None], idx[None, :]]
        return self._excited_stress(idx)

    def truncate(self, n_keep: int, window_center: float | None = None):
        """Keep ``n_keep`` states as a new block: ``(energies [n_keep], stress [6, n_keep, n_keep], diag)``.

        ``window_center=None`` keeps the lowest ``n_keep`` states (Wilson style). Otherwise it keeps
        the ground state and the ``n_keep − 1`` excitations whose energies lie nearest
        ``window_center`` (units E*: an energy window around a fixed probe frequency), in ascending
        order. diag: ``weight_kept`` (Σ_{kept α>0} |⟨α|T|0⟩|² over Σ_{α>0} |⟨α|T|0⟩|², the sum rule of
        the computed states), ``lowest_excluded_energy`` (the lowest excitation not kept; nan if every
        state is kept), ``double_in_window`` (whether the lowest double excitation, the sum of the two
        lowest single excitations on distinct members, lies below the highest kept level).
        """
        n_keep = _int_field("n_keep", n_keep, minimum=2)
        k = len(self.energies)
        if n_keep > k:
            raise InputError(f"n_keep = {n_keep}: must be ≤ {k}, the number of computed states")
        if window_center is None:
            idx = np.arange(n_keep)
        else:
            c = float(window_center)
            if not (np.isfinite(c) and c > 0):
                raise InputError(f"window_center = {window_center!r}: must be a finite energy > 0 (units E*)")
            nearest = np.argsort(np.abs(self.energies[1:] - c), kind="stable")[: n_keep - 1] + 1
            idx = np.concatenate([[0], np.sort(nearest)])
        stress = self.stress_block(idx)
        stress = 0.5 * (stress + np.swapaxes(stress, -1, -2))
        w = np.sum(self.amp0[1:] ** 2)
        excluded = np.setdiff1d(np.arange(1, k), idx)
        diag = {
            "weight_kept": float(np.sum(self.amp0[idx[1:]] ** 2) / w) if w > 0 else 1.0,
            "lowest_excluded_energy": float(self.energies[excluded[0]]) if excluded.size else float("nan"),
            "double_in_window": bool(self.lowest_double_energy() < self.energies[idx[-1]]),
        }
        return self.energies[idx].copy(), stress, diag

    def lowest_double_energy(self) -> float:
        """Unperturbed energy of the lowest double excitation (two distinct members each in level 1)."""
        e1 = np.sort(self.members[0][:, 1])
        return float(e1[0] + e1[1]) if len(e1) > 1 else float("inf")

    def resonant_mask(self) -> np.ndarray:
        """bool ``[M]`` aligned with :meth:`transitions`: True for the resonant transitions.

        Resonant: ground → a state of :attr:`resonant_states`, and a dressed member's own
        excited → other transitions (perturbative solver). Every transition of a solver without a
        resonance treatment is non-resonant. The split is a partition: Im χ of the two subsets adds
        up to Im χ of :meth:`transitions` (lines are additive).
        """
        n_ground = len(self.energies) - 1
        if self._pop_weights is None:
            return np.zeros(self.transitions([1.0]).omega.size, dtype=bool)
        sb = self._sb
        nl = sb.n_levels
        ss, mm, kk = np.meshgrid(np.arange(sb.n_blocks), np.arange(1, nl), np.arange(nl), indexing="ij")
        ss = ss[mm != kk]
        ground = np.zeros(n_ground, dtype=bool) if self.resonant_states is None else self.resonant_states[1:]
        member = np.zeros(ss.size, dtype=bool) if self.dressed_members is None else self.dressed_members[ss]
        return np.concatenate([np.asarray(ground, dtype=bool), member])

    def transitions(self, temperatures) -> Transitions:
        """Transitions for the response functions at the given temperatures (units E*).

        Exact solver: every ordered pair of computed eigenstates with Boltzmann populations over the
        computed states. Perturbative and sector solvers: dressed ground → excitation transitions with
        independent-excitation populations, plus the members' own excited → other transitions at
        zeroth order (docs/DESIGN.md note 2).
        """
        temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
        if self._pop_weights is None:
            return transitions_from_levels(self.energies, self._full_stress, temps)
        sb = self._sb
        m_energies, m_stress = self.members
        p_members = boltzmann(m_energies, temps)  # [n_T, N, n]
        w = self._pop_weights[1:]  # [K-1, N], dense (sector solver) or sparse (perturbative)
        if scipy.sparse.issparse(w):
            norm = np.maximum(np.asarray(w.sum(axis=1)).ravel(), 1e-300)
            pop0 = (w @ p_members[:, :, 0].T).T / norm  # [n_T, K-1]
        else:
            norm = np.maximum(w.sum(axis=1), 1e-300)
            pop0 = (p_members[:, :, 0] @ w.T) / norm  # [n_T, K-1]
        omega = self.energies[1:]
        amp = self.amp0[1:]
        # members' excited-initial transitions at zeroth order
        nl = sb.n_levels
        ss, mm, kk = np.meshgrid(np.arange(sb.n_blocks), np.arange(1, nl), np.arange(nl), indexing="ij")
        sel = mm != kk
        ss, mm, kk = ss[sel], mm[sel], kk[sel]
        om2 = m_energies[ss, kk] - m_energies[ss, mm]
        amp2 = m_stress[ss, :, mm, kk]
        pop2 = p_members[:, ss, mm]
        return Transitions(
            omega=np.concatenate([omega, om2]),
            amp=np.concatenate([amp, amp2]),
            population=np.concatenate([pop0, pop2], axis=1),
            temperatures=temps,
        )
