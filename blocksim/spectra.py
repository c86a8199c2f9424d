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

import numpy as np

from .errors import InputError
from .exact import solve_exact, solve_sector
from .limits import DENSE_EXACT_DIM, MAX_EXACT_DIM, MAX_SECTOR_DIM
from .perturbative import ResonanceWarning, solve_perturbative
from .spectrum import Spectrum
from .superblock import SuperBlock, _int_field, assemble_superblock, sphere_positions

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
        return solve_perturbative(sb, thr)
    if method == "sector":
        kmax = max_excitations if max_excitations is not None else (2 if include_doubles else 1)
        kmax = _int_field("max_excitations", kmax, minimum=1)
        return solve_sector(sb, min(kmax, sb.n_blocks))
    return solve_exact(sb, n_states)
