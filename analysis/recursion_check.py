"""Thin script: `python analysis/recursion_check.py FILES... [-o OUTDIR]`; the work is in blocksim.analysis.recursion_check."""

import sys

from blocksim.analysis.recursion_check import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
