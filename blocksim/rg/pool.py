"""Random streams and the pool of the coarse-graining loop (BRIEF §1b "Pool collapse"; Eq. 3.8 of [ZL]).

Every stream is ``SeedSequence(run.seed, spawn_key=run.spawn_key + key)`` with key (0,) for the
initial pool, (1, k) for the members of step k and (2, k, j) for the rotations of super block j of
step k (:data:`blocksim.io.schema.STREAM_KEYS`). Nothing depends on call order or thread count.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..errors import InputError
from ..model.blocks import make_blocks
from ..model.tensors import random_rotation

__all__ = [
    "STREAM_INITIAL_POOL",
    "STREAM_MEMBERS",
    "STREAM_ROTATIONS",
    "stream_rng",
    "initial_pool",
    "step_members",
    "step_rotations",
    "coupling_at_step",
    "distinct_ancestors",
]

STREAM_INITIAL_POOL = 0
STREAM_MEMBERS = 1
STREAM_ROTATIONS = 2


def stream_rng(cfg: Config, *key: int) -> np.random.Generator:
    """Generator of ``SeedSequence(run.seed, spawn_key=run.spawn_key + key)`` (the seed must be resolved)."""
    if cfg.run.seed is None:
        raise InputError("run.seed: must be resolved before drawing random numbers")
    ss = np.random.SeedSequence(cfg.run.seed, spawn_key=tuple(cfg.run.spawn_key) + tuple(int(k) for k in key))
    return np.random.default_rng(ss)


def initial_pool(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The pool of step 0: ``(energies [P0, n] in E*, stress [P0, 6, n, n] in T*)`` from :func:`make_blocks`."""
    return make_blocks(stream_rng(cfg, STREAM_INITIAL_POOL), cfg.pool_sizes()[0], cfg.model.block_spec())


def step_members(cfg: Config, k: int, pool_size: int) -> np.ndarray:
    """Member indices ``[P_out, N0³]`` of the super blocks of step k (pool strategy of the config).

    ``"partition"``: a random permutation of the pool split into disjoint super blocks (every block
    used once); ``"resample"``: the pool is ``rg.samples`` independent replicate pools of
    ``rg.pool_size`` blocks each (replicate r holds blocks r·P … r·P + P − 1), and replicate r's
    ``rg.pool_size`` super blocks draw their N0³ members with replacement from replicate r only
    (super blocks r·P … r·P + P − 1). With one replicate this is the draw of a single pool.
    """
    rng = stream_rng(cfg, STREAM_MEMBERS, k)
    m = cfg.members
    if cfg.rg.pool_strategy == "partition":
        if pool_size % m:
            raise InputError(f"pool size = {pool_size}: must be a multiple of N0³ = {m} for 'partition'")
        return rng.permutation(pool_size).reshape(pool_size // m, m).astype(np.int64)
    p, reps = cfg.rg.pool_size, cfg.rg.samples
    if pool_size != p * reps:
        raise InputError(f"pool size = {pool_size}: must be rg.pool_size × rg.samples = {p * reps} for 'resample'")
    draws = rng.integers(0, p, size=(reps, p, m), dtype=np.int64)
    return (draws + (np.arange(reps, dtype=np.int64) * p)[:, None, None]).reshape(reps * p, m)


def step_rotations(cfg: Config, k: int, j: int) -> np.ndarray:
    """Haar rotations ``[N0³, 3, 3]`` of the members of super block j of step k."""
    return random_rotation(stream_rng(cfg, STREAM_ROTATIONS, k, j), cfg.members)


def coupling_at_step(cfg: Config, k: int) -> float:
    """g_k = g / N0^(3k) (lattice spacing 1 at every scale; DESIGN note 3)."""
    return cfg.model.coupling / float(cfg.members) ** k


def distinct_ancestors(members_history: list, pool_size: int) -> int:
    """Number of initial-pool blocks that are ancestors of the current pool of ``pool_size`` blocks.

    ``members_history`` holds the member arrays ``[P_out, N0³]`` of the earlier steps, in order.
    """
    used = np.arange(pool_size)
    for members in reversed(members_history):
        used = np.unique(members[used].ravel())
    return int(used.size)
