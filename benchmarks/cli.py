"""Command line of the benchmark suite: ``blocksim bench`` and ``python -m benchmarks``.

``blocksim bench [--quick] [--json PATH] [--large] [--no-verify]`` prints a table of ratios
measured side by side in one run (numba kernels against plain NumPy baselines, perturbative solver
against sector ED, exact solver against its bare LAPACK/ARPACK calls, fitted cost exponents, the
quickstart RG run cold and warm, sweep scaling); see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ["add_arguments", "command", "main"]

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``blocksim bench``."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, no subprocess rows (a few seconds; used by the tests)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help="also write the results (and machine info) as JSON to PATH")
    parser.add_argument("--large", action="store_true",
                        help="also run the large-lattice targets (N0=32 n=2, N0=16 n=4) with peak memory")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not verify the predicted largest N0 with a run")


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    return x


def command(args) -> int:
    """Run the suite, print the table, optionally write JSON; returns the exit code."""
    from . import suite

    report = suite.run_suite(quick=args.quick, verify=not args.no_verify, large=args.large,
                             log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(suite.format_table(report))
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable({k: report[k] for k in ("meta", "results", "rows")}), indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="the blocksim benchmark suite")
    add_arguments(parser)
    return command(parser.parse_args(argv))
