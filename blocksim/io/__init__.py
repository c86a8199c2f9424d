"""The I/O layer: HDF5 trajectory files (BRIEF §4).

:func:`open_trajectory` is the reader; the writer's primitives (:func:`create_file`,
:func:`append_step`, :func:`update_file`) are used by the RG layer. Imports only
:mod:`blocksim.errors` and :mod:`blocksim.config`.
"""

from .trajectory import (
    FORMAT,
    FORMAT_VERSION,
    STATUSES,
    STEP_DATASETS,
    Step,
    Trajectory,
    append_step,
    create_file,
    git_commit,
    now,
    open_trajectory,
    part_path,
    put,
    update_file,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "STATUSES",
    "STEP_DATASETS",
    "Step",
    "Trajectory",
    "open_trajectory",
    "part_path",
    "put",
    "create_file",
    "append_step",
    "update_file",
    "git_commit",
    "now",
]
