"""blocksim — Monte Carlo simulator of the generic coupled block model of low-temperature glasses.

Units (BRIEF §2): ħ = k_B = 1. Energies (and frequencies ω, temperatures T) are in units of the
starting block's level scale E*; lengths are in units of the starting block size L_1; stresses are in
units of T*; and the only remaining material constant is c_l/c_t. The dimensionless coupling is
g = T*² / (ρ c_t² L_1³ E*). Inside the coupling module ρ c_t² = 1.

Susceptibility sign convention: Im χ(ω) < 0 for ω > 0 (Eq. 2.9 of Zhou & Leggett).

Symmetric tensors use the Mandel order xx, yy, zz, √2·yz, √2·xz, √2·xy (see :mod:`blocksim.model.tensors`).
References are collected in :mod:`blocksim.references`.
"""

from __future__ import annotations

from ._numba import use_versioned_cache as _use_versioned_cache
from ._version import __version__

_use_versioned_cache()  # numba's cache keyed by the kernel sources (blocksim/_numba.py)


def run(config, output=None, *, resume: bool = False, force: bool = False, progress=None):
    """Run a coarse-graining trajectory and return the path of its HDF5 file (see :mod:`blocksim.rg`)."""
    from .rg import run as _run

    return _run(config, output=output, resume=resume, force=force, progress=progress)


__all__ = ["__version__", "run"]
