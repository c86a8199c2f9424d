"""The package version (one place; :mod:`blocksim` and the file provenance read it)."""

__version__ = "0.1.0"
