"""Numba helpers shared by the kernel modules."""

from __future__ import annotations

import types

import numba

__all__ = ["serial_twin"]


def serial_twin(kernel):
    """The same kernel compiled without ``parallel`` (prange runs as range), cached under its own name."""
    f = getattr(kernel, "py_func", kernel)  # a plain function under NUMBA_DISABLE_JIT=1
    name = f.__name__.replace("_parallel", "_serial")
    twin = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    twin.__qualname__ = name
    twin.__doc__ = f"Serial twin of :func:`{f.__name__}` (small super blocks)."
    return numba.njit(cache=True, nogil=True)(twin)
