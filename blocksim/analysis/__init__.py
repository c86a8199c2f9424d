"""Reductions of blocksim trajectories (the code behind the scripts in the top-level ``analysis/``).

Each module turns trajectory files (BRIEF §4) into a table (CSV, also printed) and a PNG figure:

* :mod:`.mb_ratio` — MB_num = sqrt(Im χ_l/Im χ_t) per step, errors over pool and seeds, final MB vs c_l/c_t;
* :mod:`.flow` — MB_num and the per-volume absorption against log_{N0}(L/L_1), with the fit of Eq. (4.2);
* :mod:`.spectra_plot` — Im χ_l,t(ω) at chosen steps and temperatures;
* :mod:`.materials_plot` — Fig. 1 of [ZL] (theory vs experiment, both fits) plus simulated MB;
* :mod:`.convergence` — per-step increments of the per-volume absorption, convergence in n_keep and samples,
  and the extrapolation of Eq. (4.2) to R/L_1 with MB(R);
* :mod:`.experiment_route` — Δc/c = C ln(T/T0) slopes from Re χ(T) and γ_l/γ_t = sqrt(C_l c_l²/(C_t c_t²));
* :mod:`.recursion_check` — the finite-size scan in N0 of the interaction part of the absorption (Eq. 3.7),
  with :mod:`.recursion_plan` (scan plan, tasks, local pool / SLURM array, merge, figure);
* :mod:`.sweep_summary` — per-task MB flows of a merged sweep summary, grouped by the swept keys;
* :mod:`.cli` — ``blocksim analyze FILES... [-o OUTDIR] [--partial]`` runs the standard reductions.

Every ``run(...)`` returns a :class:`Report`. The figures use matplotlib's Agg backend.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

__all__ = ["Report", "script_main"]


@dataclass
class Report:
    """What one reduction produced: its table rows, the CSV and PNG paths, and the printed text."""

    name: str
    rows: list
    csv_path: str
    png_path: str
    text: str
    extra: dict = field(default_factory=dict)


def script_main(run, description: str, argv=None, add_options=None) -> int:
    """Shared ``main`` of the thin scripts: ``python analysis/NAME.py FILES... [-o OUTDIR]``.

    ``run(files, outdir, **options)`` does the work and returns a :class:`Report`; its text is
    printed. InputError becomes one line on stderr and exit code 2.
    """
    import sys

    from ..errors import InputError

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("files", nargs="*", help="trajectory files (.h5)")
    parser.add_argument("-o", "--outdir", default="analysis-out", help="output folder (default: analysis-out)")
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("files", "outdir")}
    try:
        report = run(args.files, args.outdir, **options)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.text)
    print(f"wrote {report.csv_path} and {report.png_path}")
    return 0
