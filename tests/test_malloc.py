"""blocksim._malloc: the glibc malloc thresholds set for RG work (numbers unchanged)."""

from __future__ import annotations

import subprocess
import sys


def test_keep_freed_memory_sets_glibc_thresholds_once():
    code = ("from blocksim._malloc import keep_freed_memory as k; import platform; "
            "ok = k(); print(ok, k(), platform.libc_ver()[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    first, second, libc = out.stdout.split()
    if libc == "glibc":
        assert first == "True" and second == "True"
    else:
        assert first == second

