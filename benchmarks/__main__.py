"""``python -m benchmarks [--quick] [--json PATH]`` — same as ``blocksim bench``."""

import sys

from .cli import main

sys.exit(main())
