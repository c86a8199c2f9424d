"""Thin script: `python analysis/recursion_check.py --plan runs/scans/recursion_check.toml --workers K` (or --task I, --merge,
--list, --ed-check); the work is in blocksim.analysis.recursion_plan and blocksim.analysis.recursion_check."""

import sys

from blocksim.analysis.recursion_plan import main

if __name__ == "__main__":
    sys.exit(main())
