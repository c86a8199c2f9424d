"""The spectra layer: super-block assembly and solvers; :func:`solve` is the facade.

A super block is N blocks on a cubic lattice (spacing 1, so the coupling g of the current scale
carries the units, BRIEF §2) with Hamiltonian (Eq. 2.16 of [ZL])

    H = Σ_s H_0^(s) + g Σ_{s≠s'} T^(s) · Λ^(ss') · T^(s')        (Mandel dot products, ρ c_t² = 1)

where the sum runs over ordered pairs. The external strain couples to the total stress
T_tot = Σ_s T^(s).

* :mod:`~blocksim.spectra.superblock` — :func:`assemble_superblock` turns members, rotations and
  the coupling table into the finalized :class:`SuperBlock` every solver consumes;
* :mod:`~blocksim.spectra.spectrum` — the solver output :class:`Spectrum` (``energies``, ``amp0``,
  ``diagnostics``, ``transitions(T)``, ``truncate(n_keep)``);
* :mod:`~blocksim.spectra.perturbative` — ``"perturbative"``: first-order theory (Eq. 3.2) for the
  ground state and every single excitation, with the pair admixture of the ground state and resonant
  clusters diagonalized exactly (numba kernels over the displacement table);
* :mod:`~blocksim.spectra.excited` — the kept stress block among excited states to first order and
  the single–double resonances (used by the perturbative solver);
* :mod:`~blocksim.spectra.exact` — ``"sector"`` (ED with at most ``max_excitations`` excited
  members) and ``"exact"`` (full ED, dense up to :data:`~blocksim.choices.DENSE_EXACT_DIM` states,
  Lanczos up to :data:`~blocksim.choices.MAX_EXACT_DIM`).

Populations at finite temperature follow docs/DESIGN.md note 2 for the perturbative and sector
solvers, and true Boltzmann weights for the exact solver. Imports the model and response layers.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..choices import DENSE_EXACT_DIM, MAX_EXACT_DIM, MAX_SECTOR_DIM, SOLVERS
from ..errors import InputError
from .exact import solve_exact, solve_sector
from .perturbative import ResonanceWarning, solve_perturbative
from .spectrum import Spectrum
from .superblock import SuperBlock, _int_field, assemble_superblock, sphere_positions

__all__ = [
    "solve_counting_resonances",
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
def solve(
    sb: SuperBlock,
    method: str = "perturbative",
    *,
    resonance_threshold: float = 0.1,
    include_doubles: bool = False,
    max_excitations: int | None = None,
    n_states: int | None = None,
) -> Spectrum:
    """Solve a super block (Eq. 2.16 of [ZL]) with the chosen solver.

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


def solve_counting_resonances(sb: SuperBlock, method: str = "perturbative", **options) -> tuple[Spectrum, bool]:
    """:func:`solve`, with a :class:`ResonanceWarning` caught and reported instead of raised.

    The loops over the super blocks of an RG step count these warnings (``n_resonance_warnings``)
    rather than print one per super block; every other warning is re-emitted unchanged.

    Returns
    -------
    (Spectrum, bool)
        The spectrum and whether the solver raised a ResonanceWarning.
    """
    resonant = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = solve(sb, method, **options)
    for w in caught:
        if issubclass(w.category, ResonanceWarning):
            resonant = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return spec, resonant
