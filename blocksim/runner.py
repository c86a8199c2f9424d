"""``blocksim run CONFIG.toml [-o OUT.h5] [--resume] [--force] [-s key=value ...]``.

Runs one coarse-graining trajectory (:func:`blocksim.rg.run`), then prints a table of the MB flow
(step, super-block scale, MB_num ± error, c_l/c_t) and writes ``OUT.png`` next to ``OUT.h5``
(:func:`blocksim.plotting.plot_mb_flow`) when matplotlib is installed; without it (the core install)
it says once that the plot was skipped. A finished run never fails over its picture. Exit codes:
0 done, 2 bad input (one line on stderr, no output file created), 128+signal when interrupted by
SIGTERM (the partial ``OUT.h5.part`` is kept, marked "failed", and ``--resume`` continues it).
CONFIG is always a file path (a name such as ``g=0.1.toml`` included).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["add_arguments", "command", "format_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``blocksim run``."""
    parser.add_argument("config", help="run config (TOML); see docs/config.md")
    parser.add_argument("-o", "--output", default=None,
                        help="output .h5 (default: run.output of the config, else out/<config stem>.h5)")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT.h5.part from its last complete step (same config required)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing OUT.h5 (only once the new run is complete)")
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. -s rg.steps=4 -s solver.method=exact "
                             "(TOML value syntax; repeatable)")
    parser.add_argument("--workers", type=int, default=1,
                        help="rg.pool_strategy = 'tree': build the samples on this many processes (same file)")
    parser.add_argument("--tree-shard", default=None, metavar="I/N",
                        help="'tree' only: build the samples of shard I of N into OUT.h5.samples/ and stop (a SLURM "
                             "array task: I = $SLURM_ARRAY_TASK_ID); a later run (or --resume) merges them")
    parser.add_argument("--dask", default=None, metavar="SCHEDULER",
                        help="'tree' only: build the samples on the workers of this dask scheduler (tcp://host:port); "
                             "same file")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output and no table")


def format_table(path) -> str:
    """The MB flow of a trajectory as a fixed-width text table."""
    from .io import open_trajectory

    with open_trajectory(path) as tr:
        s = tr.summary
        cfg = tr.run_config
    lines = [
        f"{'step':>4}  {'L/L1':>6}  {'g_k':>10}  {'MB_num':>8} ± {'err':<7}  {'MB_pool':>8} ± {'err':<7}  {'c_l/c_t':>7}",
    ]
    for i in range(len(s.get("step", []))):
        lines.append(
            f"{int(s['step'][i]):>4}  {s['scale_L_out'][i]:>6g}  {s['coupling_g'][i]:>10.4g}  "
            f"{s['mb_ratio'][i]:>8.4f} ± {s['mb_ratio_err'][i]:<7.4f}  "
            f"{s['mb_ratio_pool'][i]:>8.4f} ± {s['mb_ratio_pool_err'][i]:<7.4f}  {cfg.model.cl_over_ct:>7.4g}"
            + ("" if "reliable" not in s or s["reliable"][i] else
               f"  unreliable (n_eff = {int(s['n_effective'][i])} < {cfg.rg.min_effective_samples})")
        )
    lines.append(f"bare γ_l/γ_t = {cfg.model.mb_bare:g}; MB = powder-averaged sqrt(∫Im χ_l/∫Im χ_t) over the "
                 f"reference band at T = {cfg.reference_temperature:g} E*")
    return "\n".join(lines)


def command(args) -> int:
    """Run ``blocksim run``; returns the exit code."""
    from .config import load_config
    from .errors import InputError
    from .rg import RunInterrupted, run

    _log_to_stderr()
    cfg = load_config(Path(args.config), args.overrides)
    progress = "none" if args.quiet else None
    if args.workers < 1:
        raise InputError(f"--workers = {args.workers}: must be ≥ 1")
    shard = None
    if args.tree_shard is not None:
        parts = args.tree_shard.split("/")
        if len(parts) != 2 or not all(x.strip().isdigit() for x in parts):
            raise InputError(f"--tree-shard = {args.tree_shard!r}: must be I/N (e.g. 3/16)")
        shard = (int(parts[0]), int(parts[1]))
    try:
        if shard is not None:
            where = run(cfg, args.output, shard=shard, workers=args.workers)
            if not args.quiet:
                print(f"wrote the samples of shard {shard[0]}/{shard[1]} to {where}")
            return 0
        if args.dask is not None:
            if cfg.rg.pool_strategy != "tree":
                raise InputError(f"--dask = {args.dask!r}: needs rg.pool_strategy = 'tree'")
            from distributed import Client

            with Client(args.dask) as client:
                path = run(cfg, args.output, resume=args.resume, force=args.force, progress=progress, client=client)
        else:
            path = run(cfg, args.output, resume=args.resume, force=args.force, progress=progress,
                       workers=args.workers)
    except RunInterrupted as exc:
        where = f"; partial file {exc.path} (continue with --resume)" if exc.path else ""
        print(f"blocksim: {exc}{where}", file=sys.stderr)
        return 128 + exc.signum
    if not args.quiet:
        print(format_table(path))
    png = None if args.no_plot else _plot(path)
    if not args.quiet:
        print(f"wrote {path} and {png}" if png else f"wrote {path}")
    return 0


def _log_to_stderr() -> None:
    """INFO lines of blocksim's own loggers on stderr; other libraries' logging (matplotlib's font cache,
    numba, ...) stays at Python's default (warnings only) and out of the user's terminal."""
    logger = logging.getLogger("blocksim")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("blocksim: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (looked up per record, so a redirected stderr is honoured)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _plot(path) -> Path | None:
    """Draw the MB flow PNG; None (said once on stderr) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("blocksim: plot skipped: matplotlib is not installed (pip install 'blocksim[plot]')",
              file=sys.stderr)
        return None
    from .plotting import plot_mb_flow

    return plot_mb_flow(path, Path(path).with_suffix(".png"))
