"""Keep freed memory in the process heap during RG work (glibc only).

An RG step or tree batch allocates and frees the same few arrays of 1–50 MB thousands of times (kernel
outputs, weight columns, line rows). Above glibc's mmap threshold (128 KiB at start, adjusted as it
goes) each of them is a fresh ``mmap``: the kernel zeroes its pages on first touch and unmaps them on
``free``. In a K = 6 tree that was ≈ 10 % of the CPU time, all of it system time
(docs/performance.md). :func:`keep_freed_memory` raises the mmap threshold to glibc's maximum
(32 MiB) and the trim threshold to 1 GiB, so those arrays are carved from the heap and reused. Peak
memory stays about the same (≈ +4 % measured); freed memory is returned to the system only when
more than 1 GiB of it lies at the top of the heap. Numbers do not depend on it. On other C
libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value (HEAP_MAX_SIZE / 2 on 64-bit)
_TRIM_THRESHOLD = 2**30
_done = False


def keep_freed_memory() -> bool:
    """Set the glibc malloc thresholds above once per process; True if they are set (glibc found)."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _done
