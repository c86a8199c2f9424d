"""Super-block spectra: assembly, first-order perturbation theory (Eq. 3.2) and exact checks.

A super block is N blocks on a cubic lattice (spacing 1, so the coupling g of the current scale
carries the units, BRIEF §2) with Hamiltonian (Eq. 2.16 of [ZL])

    H = Σ_s H_0^(s) + g Σ_{s≠s'} T^(s) · Λ^(ss') · T^(s')        (Mandel dot products, ρ c_t² = 1)

where the sum runs over ordered pairs. The external strain couples to the total stress
T_tot = Σ_s T^(s).

Three solvers produce a :class:`Spectrum` with one interface:

* ``"perturbative"`` — first-order Rayleigh–Schrödinger theory (Eq. 3.2) for the ground state and every
  single excitation |s,m⟩, in the product basis. Intermediate states are the ground state, the other
  single excitations and — because V creates pairs — the double excitations admixed into the ground
  state. Near-degenerate single excitations (|V_pn| > threshold·|E_n − E_p|) are grouped into resonant
  clusters and diagonalized exactly inside the cluster (degenerate perturbation theory); they are
  counted in the diagnostics. The O(N²) sums run in numba ``prange`` kernels over the displacement
  table (:func:`blocksim.coupling.displacement_table`), with O(N n²) memory.
* ``"sector"`` — exact diagonalization of H restricted to product states with at most
  ``max_excitations`` excited blocks (1: ground + singles; 2: + doubles; N: the whole space).
* ``"exact"`` — full exact diagonalization in the n^N product space (dense up to 2048 states, Lanczos
  for the lowest states up to :data:`MAX_EXACT_DIM`).

Populations at finite temperature follow docs/DESIGN.md note 2 for the perturbative and sector
solvers, and true Boltzmann weights for the exact solver.
"""

from __future__ import annotations

import itertools
import types
import warnings
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg

from .coupling import FORMS, alpha_from_ratio, displacement_table, lattice_positions
from .errors import InputError
from .response import Transitions, boltzmann
from .tensors import rotation_mandel

__all__ = [
    "MAX_EXACT_DIM",
    "DENSE_EXACT_DIM",
    "MAX_SECTOR_DIM",
    "ResonanceWarning",
    "SuperBlock",
    "Spectrum",
    "assemble_superblock",
    "solve",
    "sphere_positions",
]

#: Largest product dimension n^N accepted by the exact solver.
MAX_EXACT_DIM = 20000
#: Up to this dimension the exact solver diagonalizes densely (all eigenstates); above it, Lanczos.
DENSE_EXACT_DIM = 2048
#: Largest number of states accepted by the sector solver.
MAX_SECTOR_DIM = 6000
#: The perturbative solver fills ``Spectrum.labels`` ([K, N] int64, O(N²) memory) only up to this
#: many entries (32 MB); above it ``labels`` is None (docs/performance.md).
PERTURBATIVE_LABELS_MAX = 4_000_000
#: Warn when more than this fraction of single excitations sits in resonant clusters.
RESONANT_FRACTION_WARN = 0.5


class ResonanceWarning(UserWarning):
    """Most single excitations are resonant: first-order theory is not controlled at this coupling."""


# ----------------------------------------------------------------------------------------------
# Description
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuperBlock:
    """A finalized super block: member arrays plus the coupling table.

    energies: float64 [N, n], member levels (ground 0), units E*.
    stress: float64 [N, 6, n, n], member stress (already rotated), Mandel, units T*.
    positions: int64 [N, 3], lattice sites in [0, n0).
    n0: lattice edge; coupling_g: g of this scale (lattice spacing 1); cl_over_ct; form.
    table: float64 [2n0−1]³×[6, 6], Λ per displacement with ρ c_t² = 1 (not multiplied by g).
    dipoles: optional float64 [N, 3, n, n], member electric dipole operators (rotated), units p*;
    they add the dipole–dipole interaction of Eq. (5.1)–(5.2),
    V_dip = g_e Σ_{s≠s'} p^(s)·μ̂^(ss')·p^(s'), μ̂ = (δ − 3nn)/(8π r³), with the dimensionless
    dipole coupling ``dipole_g`` = g_e = p*²/(ε L³ E*) (ε, the dielectric constant, is inside g_e).
    """

    energies: np.ndarray
    stress: np.ndarray
    positions: np.ndarray
    n0: int
    coupling_g: float
    cl_over_ct: float
    form: str
    table: np.ndarray = field(repr=False)
    dipoles: np.ndarray | None = field(repr=False, default=None)
    dipole_g: float = 0.0

    @property
    def n_blocks(self) -> int:
        return self.energies.shape[0]

    @property
    def n_levels(self) -> int:
        return self.energies.shape[1]

    @property
    def n_components(self) -> int:
        """Components of the interacting operator X: 6 (stress) or 9 (stress, then dipole)."""
        return 6 if self.dipoles is None else 9

    @property
    def operators(self) -> np.ndarray:
        """X^(s) ``[N, K, n, n]``: the stress (Mandel) followed by the dipole operator if present."""
        if self.dipoles is None:
            return self.stress
        return np.concatenate([self.stress, self.dipoles], axis=1)

    def coupling(self, s: int, t: int) -> np.ndarray:
        """K×K coupling of X^(s) and X^(t): blockdiag(g·Λ^(st), g_e·μ̂^(st)); zero for s = t."""
        k = self.n_components
        if s == t:
            return np.zeros((k, k))
        d = self.positions[s] - self.positions[t]
        out = np.zeros((k, k))
        out[:6, :6] = self.coupling_g * self.table[d[0] + self.n0 - 1, d[1] + self.n0 - 1, d[2] + self.n0 - 1]
        if k == 9:
            out[6:, 6:] = self.dipole_g * _dipole_unit(d)
        return out

    def pair_matrix(self) -> np.ndarray:
        """All pair couplings ``[N, N, K, K]`` (small N only; exact solvers and references)."""
        d = self.positions[:, None, :] - self.positions[None, :, :] + self.n0 - 1
        lam = self.coupling_g * self.table[d[..., 0], d[..., 1], d[..., 2]]
        if self.dipoles is None:
            return lam
        nb = self.n_blocks
        out = np.zeros((nb, nb, 9, 9))
        out[:, :, :6, :6] = lam
        for s in range(nb):
            for t in range(nb):
                if s != t:
                    out[s, t, 6:, 6:] = self.dipole_g * _dipole_unit(self.positions[s] - self.positions[t])
        return out


def _dipole_unit(d) -> np.ndarray:
    """μ̂(d) = (δ − 3 n n)/(8π |d|³) (Eq. 5.2 of [ZL] with ε absorbed in g_e), lattice spacing 1."""
    d = np.asarray(d, dtype=float)
    r = np.linalg.norm(d)
    n = d / r
    return (np.eye(3) - 3.0 * np.outer(n, n)) / (8.0 * np.pi * r**3)


def sphere_positions(n0: int) -> np.ndarray:
    """Lattice sites of an n0³ cube that lie within radius n0/2 of its centre (a lattice sphere)."""
    pos = lattice_positions(n0)
    centre = (n0 - 1) / 2.0
    keep = np.sum((pos - centre) ** 2, axis=1) <= (n0 / 2.0) ** 2 + 1e-9
    return pos[keep]


def assemble_superblock(
    energies,
    stress,
    rotations,
    n0: int,
    coupling_g: float,
    cl_over_ct: float,
    form: str = "zhou-leggett",
    positions=None,
    table=None,
    dipoles=None,
    dipole_coupling: float = 0.0,
) -> SuperBlock:
    """Place blocks on an n0³ lattice with their rotations and build the coupling table.

    energies [N, n] and stress [N, 6, n, n] are the members (units E*, T*); rotations [N, 3, 3] are
    applied to each member's stress as T → R T Rᵀ (Mandel: Q(R)·T). ``positions`` defaults to the full
    cube in C order (N = n0³); pass :func:`sphere_positions` for a spherical super block. ``table`` may
    be passed to reuse a displacement table across super blocks of one step. ``dipoles`` [N, 3, n, n]
    (units p*, rotated like vectors, p → R p) with ``dipole_coupling`` = g_e switch on the electric
    dipole–dipole channel of Eq. (5.1)–(5.2) (exact and sector solvers).
    """
    n0 = _int_field("n0", n0, minimum=2)
    energies = np.ascontiguousarray(energies, dtype=float)
    stress = np.asarray(stress, dtype=float)
    if energies.ndim != 2 or energies.shape[1] < 2:
        raise InputError(f"energies shape = {energies.shape}: must be [N, n] with n ≥ 2")
    nb, nl = energies.shape
    if stress.shape != (nb, 6, nl, nl):
        raise InputError(f"stress shape = {stress.shape}: must be {(nb, 6, nl, nl)} to match energies")
    if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(stress))):
        raise InputError("energies/stress: must be finite numbers")
    if not np.all(np.diff(energies, axis=1) >= 0) or np.any(energies[:, 0] != 0):
        raise InputError("energies: each block's levels must be ascending with the ground state at 0")
    g = float(coupling_g)
    if not np.isfinite(g) or g < 0:
        raise InputError(f"coupling_g = {coupling_g!r}: must be a finite number ≥ 0")
    alpha_from_ratio(cl_over_ct)
    if form not in FORMS:
        raise InputError(f"form = {form!r}: must be one of {', '.join(FORMS)}")
    if positions is None:
        positions = lattice_positions(n0)
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    if positions.shape != (nb, 3):
        raise InputError(f"positions shape = {positions.shape}: must be ({nb}, 3), one site per block")
    if positions.min() < 0 or positions.max() >= n0:
        raise InputError(f"positions: must lie in [0, {n0}) for n0 = {n0}")
    if len({tuple(p) for p in positions}) != nb:
        raise InputError("positions: two blocks on one lattice site")
    if rotations is not None:
        q = rotation_mandel(np.asarray(rotations, dtype=float))
        stress = np.einsum("sab,sbmn->samn", q, stress)
    stress = 0.5 * (stress + np.swapaxes(stress, -1, -2))
    if table is None:
        table = displacement_table(n0, cl_over_ct, form)
    g_e = float(dipole_coupling)
    if not np.isfinite(g_e) or g_e < 0:
        raise InputError(f"dipole_coupling = {dipole_coupling!r}: must be a finite number ≥ 0")
    if dipoles is not None:
        dipoles = np.asarray(dipoles, dtype=float)
        if dipoles.shape != (nb, 3, nl, nl) or not np.all(np.isfinite(dipoles)):
            raise InputError(f"dipoles shape = {dipoles.shape}: must be finite with shape {(nb, 3, nl, nl)}")
        if rotations is not None:
            dipoles = np.einsum("sij,sjmn->simn", np.asarray(rotations, dtype=float), dipoles)
        dipoles = np.ascontiguousarray(0.5 * (dipoles + np.swapaxes(dipoles, -1, -2)))
    elif g_e != 0:
        raise InputError(f"dipole_coupling = {g_e}: needs the members' dipole operators (dipoles=...)")
    return SuperBlock(
        energies=energies,
        stress=np.ascontiguousarray(stress),
        positions=positions,
        n0=n0,
        coupling_g=g,
        cl_over_ct=float(cl_over_ct),
        form=form,
        table=table,
        dipoles=dipoles,
        dipole_g=g_e,
    )


def _int_field(name, value, minimum):
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < minimum:
        raise InputError(f"{name} = {value!r}: must be an integer ≥ {minimum}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# Spectrum (solver output)
# ----------------------------------------------------------------------------------------------
@dataclass
class Spectrum:
    """Low-lying spectrum of a super block.

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

    def truncate(self, n_keep: int):
        """Lowest ``n_keep`` states as a new block: ``(energies [n_keep], stress [6, n_keep, n_keep], diag)``.

        diag: ``weight_kept`` (Σ_{0<α<n_keep} |⟨α|T|0⟩|² over Σ_{α>0} |⟨α|T|0⟩|², the sum rule of the
        computed states), ``lowest_excluded_energy`` (nan if every state is kept),
        ``double_in_window`` (whether the lowest double excitation, the sum of the two lowest single
        excitations on distinct members, lies below the highest kept level).
        """
        n_keep = _int_field("n_keep", n_keep, minimum=2)
        k = len(self.energies)
        if n_keep > k:
            raise InputError(f"n_keep = {n_keep}: must be ≤ {k}, the number of computed states")
        idx = np.arange(n_keep)
        stress = self.stress_block(idx)
        stress = 0.5 * (stress + np.swapaxes(stress, -1, -2))
        w = np.sum(self.amp0[1:] ** 2)
        diag = {
            "weight_kept": float(np.sum(self.amp0[1:n_keep] ** 2) / w) if w > 0 else 1.0,
            "lowest_excluded_energy": float(self.energies[n_keep]) if n_keep < k else float("nan"),
            "double_in_window": bool(self.lowest_double_energy() < self.energies[n_keep - 1]),
        }
        return self.energies[:n_keep].copy(), stress, diag

    def lowest_double_energy(self) -> float:
        """Unperturbed energy of the lowest double excitation (two distinct members each in level 1)."""
        e1 = np.sort(self.members[0][:, 1])
        return float(e1[0] + e1[1]) if len(e1) > 1 else float("inf")

    def transitions(self, temperatures) -> Transitions:
        """Transitions for the response functions at the given temperatures (units E*).

        Exact solver: every ordered pair of computed eigenstates with Boltzmann populations over the
        computed states. Perturbative and sector solvers: dressed ground → excitation transitions with
        independent-excitation populations, plus the members' own excited → other transitions at
        zeroth order (docs/DESIGN.md note 2).
        """
        temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
        if self._pop_weights is None:
            return _closed_system_transitions(self.energies, self._full_stress, temps)
        sb = self._sb
        m_energies, m_stress = self.members
        p_members = _member_boltzmann(m_energies, temps)  # [n_T, N, n]
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


def _member_boltzmann(energies, temps) -> np.ndarray:
    """:func:`blocksim.response.boltzmann` for every member at once: ``[n_T, N, n]``.

    Same arithmetic per member as ``boltzmann(energies[s], temps)`` (a loop over members is O(N)
    Python calls, 1 s at N = 32768).
    """
    e = np.asarray(energies, dtype=float)
    if not np.all(np.isfinite(e)):
        raise InputError("member energies: must be finite numbers")
    temps = np.atleast_1d(np.asarray(temps, dtype=float))
    boltzmann(e[0], temps)  # validates the temperatures (InputError) as the per-member call does
    de = e - e.min(axis=1, keepdims=True)
    tol = 1e-12 * np.maximum(1.0, np.max(np.abs(e), axis=1, keepdims=True))
    p = np.empty((temps.size,) + e.shape)
    for i, temp in enumerate(temps):
        w = (de <= tol).astype(float) if temp == 0.0 else np.exp(-de / temp)
        p[i] = w / w.sum(axis=1, keepdims=True)
    return p


def _closed_system_transitions(energies, stress, temps) -> Transitions:
    p = boltzmann(energies, temps)  # [n_T, K]
    k = len(energies)
    mi, ni = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    sel = mi != ni
    mi, ni = mi[sel], ni[sel]
    return Transitions(
        omega=energies[ni] - energies[mi],
        amp=np.moveaxis(stress[:, mi, ni], 0, -1),
        population=p[:, mi],
        temperatures=temps,
    )


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
SOLVERS = ("perturbative", "sector", "exact")


def solve(
    sb: SuperBlock,
    method: str = "perturbative",
    *,
    resonance_threshold: float = 0.1,
    include_doubles: bool = False,
    max_excitations: int | None = None,
    n_states: int | None = None,
) -> Spectrum:
    """Solve a super block.

    method: ``"perturbative"`` (Eq. 3.2 with resonant clusters), ``"sector"`` (ED with at most
    ``max_excitations`` excited members; default 2 if ``include_doubles`` else 1) or ``"exact"``
    (full ED; ``n_states`` lowest states when Lanczos is used).
    resonance_threshold: a pair of single excitations is resonant when |V_pn| > threshold·|E_n − E_p|.

    Diagnostics (all solvers): ``n_states``, ``ground_shift`` (E_0 − Σ_s E_0^(s), units E*).
    Perturbative: ``n_resonant_pairs``, ``n_resonant_clusters``, ``max_cluster_size``,
    ``resonant_fraction`` (single excitations inside clusters).
    """
    if method not in SOLVERS:
        raise InputError(f"solver.method = {method!r}: must be one of {', '.join(SOLVERS)}")
    thr = float(resonance_threshold)
    if not np.isfinite(thr) or thr <= 0 or thr >= 1:
        raise InputError(f"resonance_threshold = {resonance_threshold!r}: must be a number in (0, 1)")
    if method == "perturbative":
        if sb.dipoles is not None:
            raise InputError(
                "solver.method = 'perturbative': the dipole–dipole channel is available with the "
                "'sector' and 'exact' solvers"
            )
        return _solve_perturbative(sb, thr)
    if method == "sector":
        kmax = max_excitations if max_excitations is not None else (2 if include_doubles else 1)
        kmax = _int_field("max_excitations", kmax, minimum=1)
        return _solve_sector(sb, min(kmax, sb.n_blocks))
    return _solve_exact(sb, n_states)


# ----------------------------------------------------------------------------------------------
# Exact diagonalization in a sector of product states (slow, obvious, general)
# ----------------------------------------------------------------------------------------------
def sector_configs(n_blocks: int, n_levels: int, max_excitations: int) -> np.ndarray:
    """All product configurations with ≤ max_excitations excited members, ``[K, N]`` int (levels).

    Ordered by excitation count, then lexicographically; row 0 is the ground configuration.
    """
    rows = [np.zeros(n_blocks, dtype=np.int64)]
    for k in range(1, max_excitations + 1):
        for sites in itertools.combinations(range(n_blocks), k):
            for levels in itertools.product(range(1, n_levels), repeat=k):
                c = np.zeros(n_blocks, dtype=np.int64)
                c[list(sites)] = levels
                rows.append(c)
    return np.array(rows)


def sector_count(n_blocks: int, n_levels: int, max_excitations: int) -> int:
    from math import comb

    return sum(comb(n_blocks, k) * (n_levels - 1) ** k for k in range(max_excitations + 1))


def sector_matrices(sb: SuperBlock, configs: np.ndarray):
    """H0 (diagonal), V and T_tot (``[6, K, K]``) in the product basis ``configs`` (slow reference).

    ⟨B|V|A⟩ = Σ_{u≠v} T^u_{B_u A_u} · gΛ^(uv) · T^v_{B_v A_v} · Π_{w≠u,v} δ(B_w, A_w) (Eq. 2.16).
    """
    nb = sb.n_blocks
    lam = sb.pair_matrix()  # [N, N, K, K]
    st = sb.operators  # V couples every component of X; T_tot uses the stress (first 6)
    index = {tuple(c): i for i, c in enumerate(configs)}
    k = len(configs)
    h0 = np.array([sb.energies[np.arange(nb), c].sum() for c in configs])
    v = np.zeros((k, k))
    t = np.zeros((6, k, k))
    for ia, a in enumerate(configs):
        diag_t = st[np.arange(nb), :, a, a]  # [N, 6]
        t[:, ia, ia] = diag_t[:, :6].sum(axis=0)
        v[ia, ia] = np.einsum("ua,uvab,vb->", diag_t, lam, diag_t)
        for u in range(nb):
            for mu in range(sb.n_levels):
                if mu == a[u]:
                    continue
                b = a.copy()
                b[u] = mu
                ib = index.get(tuple(b))
                if ib is not None:
                    tu = st[u, :, mu, a[u]]
                    t[:, ib, ia] += tu[:6]
                    field_u = np.einsum("vab,vb->a", np.delete(lam[u], u, axis=0), np.delete(diag_t, u, axis=0))
                    v[ib, ia] += 2.0 * tu @ field_u
                for w in range(u + 1, nb):
                    for mw in range(sb.n_levels):
                        if mw == a[w]:
                            continue
                        b2 = b.copy()
                        b2[w] = mw
                        ib2 = index.get(tuple(b2))
                        if ib2 is not None:
                            v[ib2, ia] += 2.0 * tu @ lam[u, w] @ st[w, :, mw, a[w]]
    return h0, v, t


def _solve_sector(sb: SuperBlock, kmax: int) -> Spectrum:
    k = sector_count(sb.n_blocks, sb.n_levels, kmax)
    if k > MAX_SECTOR_DIM:
        raise InputError(
            f"sector dimension = {k} (N = {sb.n_blocks}, n = {sb.n_levels}, max_excitations = {kmax}): "
            f"must be ≤ {MAX_SECTOR_DIM}; use solver.method = 'perturbative'"
        )
    configs = sector_configs(sb.n_blocks, sb.n_levels, kmax)
    h0, v, t = sector_matrices(sb, configs)
    evals, evecs = scipy.linalg.eigh(np.diag(h0) + v)
    return _dense_spectrum(sb, evals, evecs, t, "sector", configs)


def _dense_spectrum(sb, evals, evecs, t, method, configs=None) -> Spectrum:
    ts = np.einsum("ik,aij,jl->akl", evecs, t, evecs, optimize=True)
    energies = evals - evals[0]
    amp0 = ts[:, :, 0].T.copy()
    pop_w = None
    if configs is not None:
        excited = (configs > 0).astype(float)  # [K_conf, N]
        pop_w = (evecs**2).T @ excited  # [K, N]
    diag = {"n_states": len(evals), "ground_shift": float(evals[0])}
    return Spectrum(
        energies=energies,
        amp0=amp0,
        method=method,
        diagnostics=diag,
        _sb=sb,
        _excited_stress=None,
        _pop_weights=pop_w,
        _full_stress=ts,
        labels=configs[np.argmax(evecs**2, axis=0)],
    )


# ----------------------------------------------------------------------------------------------
# Full exact diagonalization (Kronecker construction: an independent route)
# ----------------------------------------------------------------------------------------------
def _solve_exact(sb: SuperBlock, n_states) -> Spectrum:
    nb, nl = sb.n_blocks, sb.n_levels
    dim = nl**nb
    if dim > MAX_EXACT_DIM:
        raise InputError(
            f"product dimension n^N = {nl}^{nb} = {dim}: full ED allows at most {MAX_EXACT_DIM}; "
            "use solver.method = 'sector' or 'perturbative'"
        )
    # Product basis in C order (member 0 slowest): state i has digits d_s(i), place value P_s.
    place = nl ** np.arange(nb - 1, -1, -1)
    state = np.arange(dim)
    digits = (state[:, None] // place[None, :]) % nl  # [dim, N]
    rows, cols, vals = [state], [state], [sb.energies[np.arange(nb), digits].sum(axis=1)]
    new = np.arange(nl)
    ops = sb.operators
    for s in range(nb):
        for u in range(s + 1, nb):
            # two-site operator ⟨d_s d_u|2 Σ_ab T^s_a gΛ_ab T^u_b|d_s' d_u'⟩, ordered pairs (s,u), (u,s)
            w = np.einsum("ab,bmn->amn", sb.coupling(s, u), ops[u])
            pair = 2.0 * np.einsum("aij,akl->ikjl", ops[s], w)  # [d_s, d_u, d_s', d_u']
            ds, du = digits[:, s], digits[:, u]
            target = (
                state[:, None, None]
                + (new[None, :, None] - ds[:, None, None]) * place[s]
                + (new[None, None, :] - du[:, None, None]) * place[u]
            )
            rows.append(np.repeat(state, nl * nl)), cols.append(target.ravel())
            vals.append(pair[ds, du].ravel())
    h = scipy.sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(dim, dim)
    ).tocsr()

    def total_stress(a):
        """T_tot,a = Σ_s T^(s)_a as a sparse matrix in the product basis."""
        r, c, v = [], [], []
        for s in range(nb):
            ds = digits[:, s]
            r.append(np.repeat(state, nl)), c.append((state[:, None] + (new[None, :] - ds[:, None]) * place[s]).ravel())
            v.append(sb.stress[s, a][ds].ravel())
        return scipy.sparse.coo_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(dim, dim)).tocsr()

    t_ops = [total_stress(a) for a in range(6)]
    if dim <= DENSE_EXACT_DIM:
        evals, evecs = scipy.linalg.eigh(h.toarray())
    else:
        k = n_states if n_states is not None else min(dim - 2, 1 + nb * (nl - 1) + 32)
        # Lanczos for the smallest algebraic eigenvalues, started from a fixed vector so the result
        # does not depend on ARPACK's random start. ARPACK can skip an eigenvalue that is exactly 0,
        # so the spectrum is shifted to be ≥ 1 (Gershgorin bound) and shifted back.
        h = h.tocsr()
        radius = np.asarray(abs(h).sum(axis=1)).ravel() - np.abs(h.diagonal())
        shift = 1.0 - float(np.min(h.diagonal() - radius))
        v0 = np.full(dim, 1.0 / np.sqrt(dim))
        evals, evecs = scipy.sparse.linalg.eigsh(
            h + shift * scipy.sparse.identity(dim, format="csr"),
            k=int(k), which="SA", tol=1e-13, ncv=max(2 * int(k) + 1, 120), v0=v0,
        )
        evals = evals - shift
        order = np.argsort(evals)
        evals, evecs = evals[order], evecs[:, order]
    ts = np.stack([evecs.T @ (op @ evecs) for op in t_ops])
    energies = evals - evals[0]
    dominant = np.argmax(evecs**2, axis=0)
    labels = np.stack([(dominant // nl ** (nb - 1 - s)) % nl for s in range(nb)], axis=1)
    return Spectrum(
        energies=energies,
        amp0=ts[:, :, 0].T.copy(),
        method="exact",
        diagnostics={"n_states": len(evals), "ground_shift": float(evals[0]), "dimension": dim},
        _sb=sb,
        _excited_stress=None,
        _pop_weights=None,
        _full_stress=ts,
        labels=labels,
    )


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
    """``out[a, b, ix, iy, iz] = table[ix, iy, iz, a, b]`` (float64 [6, 6, m, m, m], serial)."""
    m = table.shape[0]
    out = np.empty((6, 6, m, m, m))
    for ix in range(m):
        for iy in range(m):
            for iz in range(m):
                for a in range(6):
                    for b in range(6):
                        out[a, b, ix, iy, iz] = table[ix, iy, iz, a, b]
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _local_field_kernel_parallel(pos, table, n0, t0, out):
    """h^(s) = Σ_{s'≠s} Λ^(ss')·t0^(s') for every member.

    pos: int64 [N, 3]; table: float64 [2n0−1, 2n0−1, 2n0−1, 6, 6]; t0: float64 [N, 6]; out: [N, 6].
    prange over z-rows; out[s] accumulated over s' ascending inside one iteration.
    """
    nb = pos.shape[0]
    off = n0 - 1
    starts = _z_rows(pos)
    nr = starts.shape[0] - 1
    tab = _soa_table(table)
    for r in numba.prange(nr):
        s0 = starts[r]
        ls = starts[r + 1] - s0
        lsu = numba.uint64(ls)
        acc = np.zeros((6, ls))
        xs = np.empty((6, ls))
        for t in range(nb):
            ix = pos[s0, 0] - pos[t, 0] + off
            iy = pos[s0, 1] - pos[t, 1] + off
            iz0 = numba.uint64(pos[s0, 2] - pos[t, 2] + off)
            for a in range(6):
                for j in range(lsu):
                    xs[a, j] = 0.0
                for b in range(6):
                    tb = t0[t, b]
                    for j in range(lsu):
                        xs[a, j] += tab[a, b, ix, iy, iz0 + j] * tb
            jskip = t - s0
            if 0 <= jskip < ls:  # t is in this row: no self-interaction (Λ(0) = 0 anyway)
                for a in range(6):
                    xs[a, jskip] = 0.0
            for a in range(6):
                for j in range(lsu):
                    acc[a, j] += xs[a, j]
        for j in range(ls):
            for a in range(6):
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

    pos int64 [N,3]; table float64 [..,6,6]; energies float64 [N,n]; u float64 [N,n,6];
    delta float64 [N,n,6] (output); nres int64 [N] (output). Memory beyond the inputs: one SoA copy
    of the table plus O(N0·n) per thread. prange over z-rows; each delta[s] accumulated over t
    ascending, then m', inside one iteration (bit-for-bit independent of the thread count).
    Raises ZeroDivisionError if two members have an excited level at exactly 0 (E_m + E_m' = 0).
    """
    nb = pos.shape[0]
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
        us = np.empty((ne, 6, ls))
        es = np.empty((ne, ls))
        for j in range(ls):
            for mq in range(ne):
                es[mq, j] = energies[s0 + j, mq + 1]
                for a in range(6):
                    us[mq, a, j] = u[s0 + j, mq + 1, a]
        acc = np.zeros((ne, 6, ls))
        cnt = np.zeros(ls, dtype=np.int64)
        fb = np.empty(ls)
        rb = np.empty(ls, dtype=np.int64)
        xs = np.empty((6, ls))
        for t in range(nb):
            ix = pos[s0, 0] - pos[t, 0] + off
            iy = pos[s0, 1] - pos[t, 1] + off
            iz0 = numba.uint64(pos[s0, 2] - pos[t, 2] + off)
            jskip = t - s0
            for mp in range(ne):
                ep = energies[t, mp + 1]
                # xs[a, j] = Σ_b Λ^(s_j t)_ab u^t_{m'b}, summed over b in order
                for a in range(6):
                    for j in range(lsu):
                        xs[a, j] = 0.0
                    for b in range(6):
                        ub = u[t, mp + 1, b]
                        for j in range(lsu):
                            xs[a, j] += tab[a, b, ix, iy, iz0 + j] * ub
                for mq in range(ne):
                    for j in range(lsu):
                        vv = 0.0
                        for a in range(6):
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
                    for a in range(6):
                        x = 0.0
                        for b in range(6):
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


def _serial_twin(kernel):
    """The same kernel compiled without ``parallel`` (prange runs as range), cached under its own name."""
    f = getattr(kernel, "py_func", kernel)  # a plain function under NUMBA_DISABLE_JIT=1
    name = f.__name__.replace("_parallel", "_serial")
    twin = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    twin.__qualname__ = name
    twin.__doc__ = f"Serial twin of :func:`{f.__name__}` (small super blocks)."
    return numba.njit(cache=True, nogil=True)(twin)


_local_field_kernel_serial = _serial_twin(_local_field_kernel_parallel)
_pair_kernel_serial = _serial_twin(_pair_kernel_parallel)
_resonant_pairs_kernel_serial = _serial_twin(_resonant_pairs_kernel_parallel)


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


def _member_arrays(sb: SuperBlock):
    """u [N, n, 6] = ⟨m|T^(s)|0⟩ and t0 [N, 6] = ⟨0|T^(s)|0⟩."""
    u = np.ascontiguousarray(np.moveaxis(sb.stress[:, :, :, 0], 1, 2))
    return u, np.ascontiguousarray(u[:, 0, :])


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
    ``ground_t`` (first-order ⟨0|T_tot|0⟩), ``h`` (local fields, g included), and the effective
    members ``(energies, stress, dressed_mask)`` used for excited-state quantities.
    ``use_kernels=False`` runs the plain NumPy reference of the same sums.
    """
    u, t0 = _member_arrays(sb)
    nb, nl = sb.n_blocks, sb.n_levels
    if use_kernels:
        h = np.empty((nb, 6))
        _local_field_kernel(sb.positions, sb.table, sb.n0, t0, h)
        h *= sb.coupling_g
    else:
        h = np.einsum("stab,tb->sa", sb.pair_matrix(), t0)
    vloc = 2.0 * np.einsum("sa,samk->smk", h, sb.stress)
    e_eff, s_eff, dressed = _dress_one_body(sb, vloc, thr)
    u_eff = np.ascontiguousarray(np.moveaxis(s_eff[:, :, :, 0], 1, 2))
    if use_kernels:
        delta2 = np.empty((nb, nl, 6))
        nres = np.empty(nb, dtype=np.int64)
        _pair_kernel(sb.positions, sb.table, sb.n0, sb.coupling_g, e_eff, u_eff, thr, delta2, nres)
    else:
        delta2, nres = _pair_sums_reference(sb, e_eff, u_eff, thr)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        omega, delta1, ground_t1 = _one_body_terms(sb, vloc)
    # dressed members: exact one-body treatment replaces the first-order one-body terms
    omega[dressed] = e_eff[dressed]
    delta1[dressed] = u_eff[dressed] - u[dressed]
    ground_t1[dressed] = u_eff[dressed, 0] - t0[dressed]
    amp = u + delta1 + delta2
    amp[:, 0, :] = 0.0
    ground_t = t0.sum(axis=0) + ground_t1.sum(axis=0)
    return omega, amp, nres, ground_t, h, (e_eff, s_eff, dressed)


def _dress_one_body(sb: SuperBlock, vloc, thr):
    """Exact diagonalization of H_0^(s) + 2h^(s)·T^(s) for members with a one-body resonance.

    Returns effective ``energies [N, n]`` (ground at 0), ``stress [N, 6, n, n]`` in the dressed basis
    (unchanged for members that are not dressed) and the boolean mask of dressed members.
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
    s_eff = sb.stress.copy()
    for s in np.nonzero(dressed)[0]:
        w, c = np.linalg.eigh(np.diag(e[s]) + vloc[s])
        e_eff[s] = w - w[0]
        s_eff[s] = np.einsum("mi,amn,nj->aij", c, sb.stress[s], c)
    return np.ascontiguousarray(e_eff), np.ascontiguousarray(s_eff), dressed


def _pair_sums_reference(sb: SuperBlock, energies, u, thr):
    """Plain NumPy reference for :func:`_pair_kernel` (O(N²) memory; small N only)."""
    lam = sb.pair_matrix()  # g·Λ, [N, N, 6, 6]
    e = energies[:, 1:]
    uu = u[:, 1:, :]
    v = 2.0 * np.einsum("sma,stab,tpb->smtp", uu, lam, uu)
    diff = e[:, :, None, None] - e[None, None, :, :]
    summ = e[:, :, None, None] + e[None, None, :, :]
    res = (np.abs(v) > thr * np.abs(diff)) & (v != 0)
    for s in range(sb.n_blocks):
        res[s, :, s, :] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(res | (diff == 0), 0.0, 1.0 / np.where(diff == 0, 1.0, diff)) - 1.0 / summ
    delta2 = np.zeros_like(u)
    delta2[:, 1:, :] = np.einsum("smtp,smtp,tpa->sma", v, coef, uu)
    nres = res.sum(axis=(1, 2, 3))
    return delta2, nres


def _solve_perturbative(sb: SuperBlock, thr: float) -> Spectrum:
    nb, nl = sb.n_blocks, sb.n_levels
    omega, amp, nres, ground_t, h, members = perturbative_amplitudes(sb, thr)
    e_eff, s_eff, dressed = members
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
        u_eff = np.ascontiguousarray(np.moveaxis(s_eff[:, :, :, 0], 1, 2))
        offsets = np.concatenate([[0], np.cumsum(nres[rows])]).astype(np.int64)
        k = _resonant_pairs_kernel(
            sb.positions, sb.table, sb.n0, sb.coupling_g, e_eff, u_eff, thr, rows, offsets, oi, oj, ov
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
        "ground_shift": float(np.sum(_member_arrays(sb)[1] * h)),
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
