"""Compatibility name of :mod:`blocksim.model.coupling` (BRIEF §5 documents ``blocksim.coupling.stress_coupling``)."""

from .model.coupling import *  # noqa: F401,F403
from .model.coupling import __all__  # noqa: F401
