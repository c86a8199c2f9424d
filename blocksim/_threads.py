"""BLAS thread control for the small-matrix work of RG steps.

The RG steps at N0 ≤ 4 make many small BLAS products ([4096, 48] × [4096, 63] and smaller). On a
loaded machine OpenBLAS's thread pool makes those up to 10× slower than one thread (measured in
docs/performance.md), and the runs already use every core through numba's ``prange`` and worker
processes. :func:`single_blas` limits BLAS to one thread for the duration of a block and restores
the previous setting afterwards. Each output element of a BLAS product is computed by one thread
either way, so results do not depend on it.
"""

from __future__ import annotations

import contextlib

__all__ = ["single_blas"]


@contextlib.contextmanager
def single_blas():
    """Context manager: BLAS (OpenBLAS, MKL, BLIS) limited to one thread inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
