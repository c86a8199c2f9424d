"""Thin script: `python analysis/spectra.py FILES... [-o OUTDIR]`; the work is in blocksim.analysis.spectra_plot."""

import sys

from blocksim.analysis.spectra_plot import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
