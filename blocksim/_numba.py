"""Numba helpers shared by the kernel modules, and where their compiled code is cached.

**The cache is keyed by the kernel sources.** Numba checks a cached kernel against the time stamp of
its own source file only. A kernel that calls a kernel of another module (``batch`` calls
``spectrum.eigh_pair``, ``excited.double_amplitude_scratch``, …) keeps the compiled callee after that
callee's file has changed: after a ``git pull`` or an edit, the batched solver could run the old
population rule or eigen-solver while the per-super-block path runs the new one. So
:func:`use_versioned_cache` (called by ``import blocksim``) points ``numba.config.CACHE_DIR`` at
``blocksim/__pycache__/numba-<hash>``, the hash taken over numba's version and every blocksim source
file that mentions numba: any change to a kernel source gives a fresh cache (one recompilation), and
unchanged sources reuse it. A ``NUMBA_CACHE_DIR`` set by the user is left alone. The three newest
``numba-*`` directories are kept. Where the package directory is not writable numba falls back to its
default locations.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import types
from pathlib import Path

import numba

__all__ = ["serial_twin", "kernel_source_hash", "use_versioned_cache"]

#: ``numba-*`` cache directories kept beside the current one.
KEEP_CACHES = 3


def kernel_source_hash(package_dir) -> str:
    """12 hex digits of sha1 over numba's version and the sources under ``package_dir`` that mention numba."""
    root = Path(package_dir)
    h = hashlib.sha1(numba.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        data = path.read_bytes()
        if b"numba" in data:
            h.update(str(path.relative_to(root)).encode() + b"\0" + data)
    return h.hexdigest()[:12]


def use_versioned_cache() -> str | None:
    """Cache numba's compiled kernels under ``blocksim/__pycache__/numba-<kernel_source_hash>``.

    Returns the directory, or None when the user chose one (``NUMBA_CACHE_DIR``) and it is left alone.
    """
    if os.environ.get("NUMBA_CACHE_DIR") or numba.config.CACHE_DIR:
        return None
    pkg = Path(__file__).resolve().parent
    base = pkg / "__pycache__"
    path = base / f"numba-{kernel_source_hash(pkg)}"
    numba.config.CACHE_DIR = str(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.utime(path)
        old = sorted((d for d in base.glob("numba-*") if d.is_dir() and d != path), key=lambda d: d.stat().st_mtime)
        for d in old[: max(0, len(old) - (KEEP_CACHES - 1))]:
            shutil.rmtree(d, ignore_errors=True)
    except OSError:
        pass  # not writable: numba falls back to its default cache locations
    return str(path)


def serial_twin(kernel):
    """The same kernel compiled without ``parallel`` (prange runs as range), cached under its own name."""
    f = getattr(kernel, "py_func", kernel)  # a plain function under NUMBA_DISABLE_JIT=1
    name = f.__name__.replace("_parallel", "_serial")
    twin = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    twin.__qualname__ = name
    twin.__doc__ = f"Serial twin of :func:`{f.__name__}` (small super blocks)."
    return numba.njit(cache=True, nogil=True)(twin)
