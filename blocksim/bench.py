"""``blocksim bench [--quick] [--json PATH] [--large] [--no-verify]`` — the benchmark suite.

The suite is the top-level ``benchmarks`` package of the repository (next to ``blocksim/``, installed
with it by ``pip install -e .``), not part of the library: it needs the source tree
(``runs/quickstart.toml``). This module only hands the subcommand to :mod:`benchmarks.cli`.
"""

from __future__ import annotations

from .errors import InputError

__all__ = ["add_arguments", "command", "load_suite"]


def _cli():
    try:
        from benchmarks import cli
    except ImportError:
        raise InputError("benchmarks: package not found; blocksim bench needs a source checkout "
                         "installed with pip install -e .") from None
    return cli


def load_suite():
    """The :mod:`benchmarks.suite` module (InputError without a source checkout)."""
    _cli()
    from benchmarks import suite

    return suite


def add_arguments(parser) -> None:
    """Arguments of ``blocksim bench`` (see :func:`benchmarks.cli.add_arguments`)."""
    try:
        _cli().add_arguments(parser)
    except InputError:  # still list the subcommand; running it reports the missing suite
        pass


def command(args) -> int:
    """Run ``blocksim bench``; returns the exit code."""
    return _cli().command(args)
