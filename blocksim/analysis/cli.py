"""``blocksim analyze FILES... [-o OUTDIR]``: the standard reductions in one go.

Runs :mod:`.mb_ratio`, :mod:`.flow`, :mod:`.spectra_plot` and :mod:`.experiment_route` on the given
trajectories, and :mod:`.materials_plot` when some trajectory's c_l/c_t matches one of the 13
materials of Sec. IV of [ZL]. Each writes its CSV and PNG under OUTDIR and prints its table.
(The recursion check, :mod:`.recursion_check`, simulates its own super blocks and is run separately:
``python analysis/recursion_check.py``.)
"""

from __future__ import annotations

import math

from . import experiment_route, flow, mb_ratio, materials_plot, spectra_plot
from .loading import load_trajectories

__all__ = ["add_arguments", "command", "analyze"]


def add_arguments(parser) -> None:
    """Arguments of ``blocksim analyze``."""
    parser.add_argument("files", nargs="+", metavar="FILES", help="trajectory files (.h5)")
    parser.add_argument("-o", "--outdir", default="analysis-out", help="output folder (default: analysis-out)")
    parser.add_argument("--match-tol", dest="match_tol", type=float, default=0.01,
                        help="c_l/c_t tolerance for matching a material (default 0.01)")


def analyze(files, outdir="analysis-out", match_tol=0.01, verbose=True) -> list:
    """Run the standard reductions; returns their :class:`blocksim.analysis.Report` objects."""
    trajs = load_trajectories(files)
    reports = [
        mb_ratio.run(trajs, outdir),
        flow.run(trajs, outdir),
        spectra_plot.run(trajs, outdir),
        experiment_route.run(trajs, outdir),
    ]
    mat_rows = materials_plot.materials_rows(trajs, match_tol)
    if any(not math.isnan(r["mb_sim"]) for r in mat_rows):
        reports.append(materials_plot.run(trajs, outdir, match_tol=match_tol))
    if verbose:
        for rep in reports:
            print(rep.text)
            print(f"wrote {rep.csv_path} and {rep.png_path}\n")
    return reports


def command(args) -> int:
    """Run ``blocksim analyze``; returns the exit code."""
    analyze(args.files, args.outdir, args.match_tol)
    return 0
