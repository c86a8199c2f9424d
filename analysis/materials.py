"""Thin script: `python analysis/materials.py FILES... [-o OUTDIR]`; the work is in blocksim.analysis.materials_plot."""

import sys

from blocksim.analysis.materials_plot import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
