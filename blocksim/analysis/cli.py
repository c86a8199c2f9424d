"""``blocksim analyze FILES... [-o OUTDIR] [--partial]``: the standard reductions in one go.

Runs :mod:`.mb_ratio`, :mod:`.flow`, :mod:`.spectra_plot`, :mod:`.experiment_route` and
:mod:`.convergence` (per-step absorption increments, convergence in n_keep and samples, extrapolation
to R; options ``--L1``, ``--R`` in metres, ``--skip-steps``, ``--material-lengths``) on the given
trajectories, and :mod:`.materials_plot` when some trajectory's c_l/c_t matches one of the 13
materials of Sec. IV of [ZL]. Merged sweep summaries (``blocksim merge``) among FILES go to
:mod:`.sweep_summary` (per-task MB flows, grouped by the swept keys). Each writes its CSV and PNG
under OUTDIR and prints its table. (The recursion check, :mod:`.recursion_check`, simulates its own
super blocks and is run separately: ``python analysis/recursion_check.py``.)

Every input is checked and every reduction computed before anything is written: the files are
written to a hidden staging folder beside OUTDIR and moved into OUTDIR only when all reductions
succeeded, so a refused input leaves no output. A trajectory that is not complete (status
"running" or "failed") is refused unless ``--partial``, which analyzes its complete steps and says so.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from . import convergence, experiment_route, flow, mb_ratio, materials_plot, spectra_plot, sweep_summary
from .loading import MANIFEST_FORMAT, file_format, load_trajectories

__all__ = ["add_arguments", "command", "analyze"]


def add_arguments(parser) -> None:
    """Arguments of ``blocksim analyze``."""
    parser.add_argument("files", nargs="+", metavar="FILES",
                        help="trajectory files (.h5) and/or merged sweep summaries (blocksim merge)")
    parser.add_argument("-o", "--outdir", default="analysis-out", help="output folder (default: analysis-out)")
    parser.add_argument("--match-tol", dest="match_tol", type=float, default=0.01,
                        help="c_l/c_t tolerance for matching a material (default 0.01)")
    parser.add_argument("--partial", action="store_true",
                        help="accept trajectories that are not complete (running or failed runs): analyze "
                             "their complete steps")
    convergence.add_options(parser)


def _check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"--outdir: {str(outdir)!r} exists and is not a directory")
    anc = outdir
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"--outdir: {str(anc)!r} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"--outdir: directory {str(anc)!r} is not writable")


def _check_complete(trajs, partial: bool) -> None:
    for t in trajs:
        if t.status == "complete":
            continue
        total = t.attrs.get("n_steps")
        of = f" of {total}" if isinstance(total, int) else ""
        what = f"{t.path}: status = {t.status!r} ({len(t.steps)}{of} steps complete)"
        if not partial:
            raise InputError(f"{what}; its final values would be those of step {t.steps[-1].index}, not of "
                             "the finished run; pass --partial to analyze its complete steps anyway")
        print(f"blocksim: warning: {what}; analyzing the complete steps only (--partial)", file=sys.stderr)


def analyze(files, outdir="analysis-out", match_tol=0.01, verbose=True, partial=True, *, L1=convergence.DEFAULT_L1_M,  # noqa: N803
            R=convergence.DEFAULT_R_M, skip_steps=0, material_lengths=None) -> list:
    """Run the standard reductions; returns their :class:`blocksim.analysis.Report` objects.

    ``partial``: accept trajectories whose status is not "complete" (the CLI's default is to refuse
    them unless ``--partial``). ``L1``, ``R`` (metres), ``skip_steps`` and ``material_lengths``
    (``{material: (L1, R)}`` or ``["NAME=L1,R"]``) go to :mod:`.convergence`. Nothing is written under
    ``outdir`` unless every reduction succeeds.
    """
    files = list(files)
    if not files:
        raise InputError("FILES: give at least one trajectory file")
    conv_options = {"L1": L1, "R": R, "skip_steps": skip_steps, "match_tol": match_tol,
                    "material_lengths": convergence.parse_material_lengths(material_lengths)
                    if not isinstance(material_lengths, dict) else material_lengths}
    convergence.check_lengths(L1, R)
    out = Path(outdir)
    _check_outdir(out)
    formats = {f: file_format(f) for f in files}
    # a sweep's manifest.h5 sits beside its trajectories, so `analyze OUT/*.h5` names it too: left out
    manifests = [f for f in files if formats[f] == MANIFEST_FORMAT]
    if manifests and verbose:
        print(f"analyze: left out {len(manifests)} sweep manifest(s) ({', '.join(map(str, manifests))}): "
              "not trajectories")
    files = [f for f in files if f not in manifests]
    if not files:
        raise InputError("FILES: only sweep manifests given; give the trajectory files (or a blocksim merge summary)")
    summaries = [f for f in files if formats[f] == sweep_summary.SWEEP_FORMAT]
    trajs = load_trajectories([f for f in files if f not in summaries]) if len(summaries) < len(files) else []
    _check_complete(trajs, partial)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        reports = []
        if trajs:
            reports += [mb_ratio.run(trajs, staging), flow.run(trajs, staging), spectra_plot.run(trajs, staging)]
            route = [t for t in trajs if experiment_route.applies(t)]
            if route:
                reports.append(experiment_route.run(route, staging))
            if verbose and len(route) < len(trajs):
                print(f"experiment_route: skipped {len(trajs) - len(route)} file(s) with fewer than 2 positive "
                      "temperatures (the ln T fit of the velocity shift needs ≥ 2)")
            reports.append(convergence.run(trajs, staging, **conv_options))
            mat_rows = materials_plot.materials_rows(trajs, match_tol)
            if any(not math.isnan(r["mb_sim"]) for r in mat_rows):
                reports.append(materials_plot.run(trajs, staging, match_tol=match_tol))
        if summaries:
            reports.append(sweep_summary.run(summaries, staging))
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for rep in reports:
        rep.csv_path = str(out / Path(rep.csv_path).name)
        rep.png_path = str(out / Path(rep.png_path).name)
    if verbose:
        for rep in reports:
            print(rep.text)
            print(f"wrote {rep.csv_path} and {rep.png_path}\n")
    return reports


def command(args) -> int:
    """Run ``blocksim analyze``; returns the exit code."""
    analyze(args.files, args.outdir, args.match_tol, partial=args.partial, L1=args.L1, R=args.R,
            skip_steps=args.skip_steps, material_lengths=args.material_lengths)
    return 0
