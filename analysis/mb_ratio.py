"""Thin script: `python analysis/mb_ratio.py FILES... [-o OUTDIR]`; the work is in blocksim.analysis.mb_ratio."""

import sys

from blocksim.analysis.mb_ratio import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
