"""``python -m benchmarks [--quick] [--json PATH]`` — same as ``blocksim bench``."""

import sys

from blocksim.bench import main

sys.exit(main())
