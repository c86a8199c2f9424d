"""Size limits of the solvers, in one place (the config validation and the solvers both import them).

A config is checked against these before step 0 starts (:func:`blocksim.config.load_config`), so a
run never dies mid-way on a super block that is too large for its solver.
"""

from __future__ import annotations

from math import comb

__all__ = ["MAX_EXACT_DIM", "DENSE_EXACT_DIM", "MAX_SECTOR_DIM", "sector_dimension", "exact_state_count",
           "perturbative_state_count"]

#: Largest product dimension n^N accepted by the exact solver.
MAX_EXACT_DIM = 20000
#: Up to this dimension the exact solver diagonalizes densely (all eigenstates); above it, Lanczos.
DENSE_EXACT_DIM = 2048
#: Largest number of states accepted by the sector solver.
MAX_SECTOR_DIM = 6000


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
