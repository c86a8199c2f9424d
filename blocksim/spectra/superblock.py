"""Super-block description: members on a cubic lattice, their rotations and the coupling table.

The finalized :class:`SuperBlock` is what every solver in :mod:`blocksim.spectra` consumes
(STYLE: a description, then a finalized form). Hamiltonian (Eq. 2.16 of [ZL]):

    H = Σ_s H_0^(s) + g Σ_{s≠s'} T^(s) · Λ^(ss') · T^(s')   (Mandel dot products, ρ c_t² = 1)

with an optional electric dipole–dipole term (Eq. 5.1–5.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.coupling import FORMS, alpha_from_ratio, displacement_table, lattice_positions
from ..errors import InputError
from ..model.tensors import rotation_mandel

__all__ = ["SuperBlock", "assemble_superblock", "dipole_table", "sphere_positions"]


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
        """Number of member blocks N (= N0³ on the cubic lattice)."""
        return self.energies.shape[0]

    @property
    def n_levels(self) -> int:
        """Levels n of each member block."""
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


def dipole_table(n0: int) -> np.ndarray:
    """μ̂(d) (Eq. 5.2 of [ZL]) for every lattice displacement of an n0³ cube, ``[2n0−1]³ × [3, 3]`` (0 at d = 0)."""
    m = 2 * n0 - 1
    d = np.stack(np.meshgrid(*(np.arange(m) - (n0 - 1),) * 3, indexing="ij"), axis=-1).astype(float)
    r = np.linalg.norm(d, axis=-1)
    safe = np.where(r > 0, r, 1.0)
    n = d / safe[..., None]
    out = (np.eye(3) - 3.0 * n[..., :, None] * n[..., None, :]) / (8.0 * np.pi * safe[..., None, None] ** 3)
    out[r == 0] = 0.0
    return out


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
    dipole–dipole channel of Eq. (5.1)–(5.2) (all solvers).
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
