"""Thin script: `python analysis/flow.py FILES... [-o OUTDIR]`; the work is in blocksim.analysis.flow."""

import sys

from blocksim.analysis.flow import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
