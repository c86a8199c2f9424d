"""Thin script: `python analysis/experiment_route.py FILES... [-o OUTDIR]`; the work is in blocksim.analysis.experiment_route."""

import sys

from blocksim.analysis.experiment_route import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
