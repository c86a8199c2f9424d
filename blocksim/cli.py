"""Command-line front end: ``blocksim SUBCOMMAND ...``.

Each subcommand lives in the module that owns the concept; that module provides
``add_arguments(parser)`` and ``command(args) -> int``. This file only wires them together, turns
:class:`blocksim.errors.InputError` into one line on stderr with exit code 2, and stays import-light
(modules are imported when their subcommand is chosen).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import InputError

#: subcommand → (module implementing add_arguments/command, one-line help)
SUBCOMMANDS = {
    "run": ("blocksim.runner", "run one coarse-graining trajectory from a TOML config"),
    "sweep": ("blocksim.sweep.cli", "run a parameter sweep (local, dask or slurm executor)"),
    "run-task": ("blocksim.sweep.cli_task", "run one task of a sweep by index"),
    "sweep-status": ("blocksim.sweep.cli_status", "count done/running/failed/missing tasks of a sweep"),
    "merge": ("blocksim.sweep.cli_merge", "merge a sweep's trajectories into one summary file"),
    "analyze": ("blocksim.analysis.cli", "run the standard reductions on trajectory files"),
    "materials": ("blocksim.model.materials", "print the Meissner–Berret materials table and fits"),
    "bench": ("blocksim.bench", "run the benchmark suite (ratios against NumPy baselines)"),
}


def build_parser(argv) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser, and the module of the subcommand named in ``argv`` (None if none).

    Only the chosen subcommand's module is imported (the CLI stays import-light).
    """
    parser = argparse.ArgumentParser(prog="blocksim", description=__doc__.splitlines()[0])
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"blocksim {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (modname, helptext) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == chosen:
            module = importlib.import_module(modname)
            module.add_arguments(p)
    return parser, module


def main(argv=None) -> int:
    """Entry point of the ``blocksim`` command; returns the exit code (2 for bad input).

    An :class:`~blocksim.errors.InputError` becomes one line on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # library chatter (matplotlib building its font cache, ...) stays out of the user's terminal
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    try:
        parser, module = build_parser(argv)
        args = parser.parse_args(argv)
        if module is None:
            parser.print_help()
            return 2
        return int(module.command(args) or 0)
    except InputError as exc:
        print(f"blocksim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blocksim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
