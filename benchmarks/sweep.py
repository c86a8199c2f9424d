"""Sweep throughput: the local executor (and a SLURM job array, when one answers) on tiny tasks.

Used by the ``sweep`` rows of the suite and by tests/test_slurm.py. It lives here, not in the
library: :mod:`blocksim.sweep.executors` only runs sweeps.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from blocksim.sweep.executors import run_local, sinfo_partitions, submit_slurm, wait_slurm
from blocksim.sweep.spec import load_spec
from blocksim.sweep.tasks import task_state

__all__ = ["sweep_throughput"]

_BENCH_BASE = """\
[model]
block = "generic"
n = 2
[lattice]
n0 = 2
[rg]
steps = 1
pool_size = 1
n_keep = 2
[observables]
temperatures = [0.1]
omega_points = 8
"""


def sweep_throughput(workers: int, n_tasks: int) -> dict:
    """Tasks per second of the local executor on ``n_tasks``
    tiny tasks with ``workers`` processes, and — if a SLURM controller answers ``sinfo`` — the same
    sweep as a job array, reported as the extra wall time per task of the SLURM path.

    Returns ``{"workers", "n_tasks", "local_seconds", "local_tasks_per_second",
    "local_seconds_per_task", "slurm_seconds", "slurm_overhead_per_task_seconds"}`` (SLURM entries are
    None when no SLURM is reachable).
    """
    result = {"workers": workers, "n_tasks": n_tasks, "slurm_seconds": None,
              "slurm_overhead_per_task_seconds": None}
    with tempfile.TemporaryDirectory(prefix="blocksim-bench-sweep-") as tmp:
        def make(name):
            (Path(tmp) / "base.toml").write_text(_BENCH_BASE)
            path = Path(tmp) / f"{name}.toml"
            path.write_text(f'base = "base.toml"\n[sweep]\nname = "{name}"\noutput_dir = "{name}"\n'
                            f"entropy = 1\nreplicates = {n_tasks}\n[slurm]\ntime = \"00:10:00\"\nmem = \"200M\"\n")
            return load_spec(path)

        warm = make("warm")  # compile/load Numba caches once so that both paths start warm
        run_local(warm, [0], workers=1, log=None)
        spec = make("local")
        t0 = time.perf_counter()
        res = run_local(spec, range(n_tasks), workers=workers, log=None)
        dt = time.perf_counter() - t0
        if any(r.state != "done" for r in res):
            raise RuntimeError(f"benchmark task failed: {[r.message for r in res if r.state != 'done'][:1]}")
        result.update(local_seconds=dt, local_tasks_per_second=n_tasks / dt, local_seconds_per_task=dt / n_tasks)
        if sinfo_partitions():
            spec = make("slurm")
            t0 = time.perf_counter()
            _, job = submit_slurm(spec, range(n_tasks), log=None)
            wait_slurm(spec, job, poll=0.2, timeout=600)
            ts = time.perf_counter() - t0
            if any(task_state(spec, t).state != "done" for t in spec.tasks):
                raise RuntimeError("benchmark: a SLURM task failed")
            result.update(slurm_seconds=ts, slurm_overhead_per_task_seconds=(ts - dt) / n_tasks)
    result["local_tasks_per_second"] = round(result["local_tasks_per_second"], 4)
    return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in result.items()}
