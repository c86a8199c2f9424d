"""Choice lists and limits shared by the config and the physics modules (one definition each).

:mod:`blocksim.config` validates TOML fields against these tuples; the model, response and spectra
modules validate their arguments against the same tuples, so a new choice is added in one place.
The solver size limits (and the state counts they bound) are checked for a whole run before step 0
(:func:`blocksim.config.load_config`), so a run never dies mid-way on a super block that is too
large for its solver. Imports nothing from blocksim.
"""

from __future__ import annotations

import math
from math import comb

__all__ = [
    "BLOCK_KINDS",
    "LEVEL_DISTRIBUTIONS",
    "FORMS",
    "SOLVERS",
    "POOL_STRATEGIES",
    "TRUNCATIONS",
    "LINES",
    "SHAPES",
    "PROGRESS",
    "SQRT_FOUR_THIRDS",
    "MAX_EXACT_DIM",
    "DENSE_EXACT_DIM",
    "MAX_SECTOR_DIM",
    "OMEGA_LIMITS",
    "OMEGA_MAX_DECADES",
    "sector_dimension",
    "exact_state_count",
    "perturbative_state_count",
]

#: Block kinds of :func:`blocksim.model.blocks.make_blocks` and the model fields each one takes.
BLOCK_KINDS = {
    "generic": ("n", "level_distribution", "level_scale", "mb_bare"),
    "ttls": ("k", "delta_max", "delta0_min", "delta0_max", "gamma", "mb_bare"),
    "goe": ("n", "level_scale", "mb_bare"),
}
#: Level distributions of generic blocks (:func:`blocksim.model.blocks.generic_blocks`).
LEVEL_DISTRIBUTIONS = ("uniform", "exponential", "poisson", "wigner")
#: Coupling laws: Eq. (A15) of [ZL] and the Joffrin–Levelut form, Eq. (A1).
FORMS = ("zhou-leggett", "joffrin-levelut")
#: Super-block solvers of :func:`blocksim.spectra.solve` (``solver.method``).
SOLVERS = ("perturbative", "sector", "exact")
#: RG pool strategies (BRIEF §1b "Pool collapse").
POOL_STRATEGIES = ("partition", "resample", "tree")
#: Truncations of a super block: lowest n_keep levels, or an energy window.
TRUNCATIONS = ("lowest", "window")
#: Line shapes of the response functions (binned spectral weight, Lorentzian, Gaussian).
LINES = ("bins", "lorentzian", "gaussian")
#: Super-block shapes.
SHAPES = ("cube",)
#: Progress reporting of a run.
PROGRESS = ("auto", "bar", "log", "none")

#: √(4/3): the lower bound of γ_l/γ_t for an isotropic stress ensemble, and of c_l/c_t for a
#: positive bulk modulus (BRIEF §1b).
SQRT_FOUR_THIRDS = math.sqrt(4.0 / 3.0)

#: Largest product dimension n^N of full exact diagonalization (the config refuses larger runs,
#: the solver larger super blocks).
MAX_EXACT_DIM = 20000
#: Up to this dimension full ED is dense (all eigenstates); above it, Lanczos for the lowest states.
DENSE_EXACT_DIM = 2048
#: Largest number of states of the sector solver.
MAX_SECTOR_DIM = 6000
#: Range of an explicit ω grid bound (units E*) and the widest grid (decades): beyond them the log grid
#: loses every line in one bin, or in floating point, and MB becomes NaN.
OMEGA_LIMITS = (1e-100, 1e100)
OMEGA_MAX_DECADES = 30


def sector_dimension(n_blocks: int, n_levels: int, max_excitations: int) -> int:
    """Product states with at most ``max_excitations`` excited members: Σ_k C(N, k)(n − 1)^k."""
    return sum(comb(n_blocks, k) * (n_levels - 1) ** k for k in range(min(max_excitations, n_blocks) + 1))


def exact_state_count(n_blocks: int, n_levels: int, n_states: int | None = None) -> int:
    """States the exact solver returns: all n^N when dense, else the Lanczos count (default N(n−1) + 33)."""
    dim = n_levels**n_blocks
    if dim <= DENSE_EXACT_DIM:
        return dim
    return int(n_states) if n_states is not None else min(dim - 2, 1 + n_blocks * (n_levels - 1) + 32)


def perturbative_state_count(n_blocks: int, n_levels: int) -> int:
    """States the perturbative solver always returns: the ground state and N(n − 1) single excitations.

    (Doubles resonant with a single excitation are added inside their clusters, so a spectrum may hold
    more; never fewer.)
    """
    return 1 + n_blocks * (n_levels - 1)
