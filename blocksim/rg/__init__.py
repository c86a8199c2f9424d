"""The RG layer: the real-space coarse-graining loop and its per-step observables (BRIEF §1.5, §1b).

:func:`run` (``run(config) -> path``) is the entry point; :mod:`~blocksim.rg.loop` holds the loop,
:mod:`~blocksim.rg.observables` the per-step ω grid, response arrays and MB ratios. This is the only
layer that reads :class:`blocksim.config.Config`.
"""

from .loop import (
    STREAM_INITIAL_POOL,
    STREAM_MEMBERS,
    STREAM_ROTATIONS,
    RunInterrupted,
    coupling_at_step,
    initial_pool,
    run,
    step_members,
    step_rotations,
    stream_rng,
)

__all__ = [
    "STREAM_INITIAL_POOL",
    "STREAM_MEMBERS",
    "STREAM_ROTATIONS",
    "RunInterrupted",
    "run",
    "stream_rng",
    "initial_pool",
    "step_members",
    "step_rotations",
    "coupling_at_step",
]
