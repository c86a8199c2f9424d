"""Parameter sweeps: specs, task enumeration, executors (local, dask, SLURM), manifest and merge.

A sweep file (``SWEEP.toml``, see :mod:`blocksim.sweep.spec` and docs/sweeps.md) names a base run
config, a grid and zipped lists over dotted config keys, and replicates. Every task runs
:func:`blocksim.sweep.tasks.run_task` — the same code on every executor — with the seed
``SeedSequence(entropy, spawn_key=(task_index,))``. Importing this package does not import numba.
"""

from __future__ import annotations

from .spec import SweepSpec, Task, load_spec
from .tasks import TaskResult, run_task, task_state

__all__ = ["SweepSpec", "Task", "TaskResult", "load_spec", "run_task", "task_state"]
