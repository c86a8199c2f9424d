"""The I/O layer: HDF5 trajectory files (BRIEF §4).

:mod:`~blocksim.io.schema` owns the file contract: one table row per dataset (name, dtype, shape,
units, description, accuracy), from which the writer, the reader's :class:`Step` and the tables of
docs/trajectory-format.md are generated.

:func:`open_trajectory` is the reader; the writer's primitives (:func:`create_file`,
:func:`append_step`, :func:`update_file`) are used by the RG layer. Imports only
:mod:`blocksim.errors` and :mod:`blocksim.config`.
"""

from . import schema
from .trajectory import (
    FORMAT,
    FORMAT_VERSION,
    STATUSES,
    STEP_DATASETS,
    Step,
    Trajectory,
    _tmp_name,  # noqa: F401  (used by tests/test_hostile.py)
    append_step,
    checksum,
    create_file,
    git_commit,
    now,
    open_trajectory,
    part_path,
    put,
    update_file,
)

__all__ = [
    "schema",
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
    "checksum",
]
