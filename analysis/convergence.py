"""Thin script: `python analysis/convergence.py FILES... [-o OUTDIR] [--L1 M] [--R M] [--skip-steps N]`;
the work is in blocksim.analysis.convergence."""

import sys

from blocksim.analysis.convergence import main, run  # noqa: F401  (importable: run(files, outdir))

if __name__ == "__main__":
    sys.exit(main())
