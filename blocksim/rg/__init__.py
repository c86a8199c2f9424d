"""The RG layer: the real-space coarse-graining loop and its per-step observables (BRIEF §1.5, §1b).

* :mod:`~blocksim.rg.loop` — :func:`run` (``run(config) -> path``), a list of named phases;
* :mod:`~blocksim.rg.control` — signals, progress, threads and resume;
* :mod:`~blocksim.rg.pool` — random streams, the initial pool, members and rotations per step;
* :mod:`~blocksim.rg.step` — one step: solve, measure, truncate;
* :mod:`~blocksim.rg.observables` — ω grid, response arrays, band weights, MB ratios (arrays only);
* :mod:`~blocksim.rg.diagnostics` — the per-step diagnostics (arrays only).

This is the only layer that reads :class:`blocksim.config.Config`; it hands arrays to
:mod:`blocksim.io`, whose schema owns every dataset's name, units and description.
"""

from .control import RunInterrupted
from .loop import run
from .pool import (
    STREAM_INITIAL_POOL,
    STREAM_MEMBERS,
    STREAM_ROTATIONS,
    coupling_at_step,
    initial_pool,
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
