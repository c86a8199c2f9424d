"""The dask executor on a real distributed.LocalCluster (2 worker processes, 1 thread each):
same files, bit for bit, as the local process pool."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blocksim.sweep import load_spec
from blocksim.sweep.executors import run_dask, run_local
from blocksim.sweep.manifest import read_manifest, write_manifest
from test_sweep import assert_same_results, write_sweep

distributed = pytest.importorskip("distributed", reason="the dask executor needs distributed ([dask] extra)")

pytestmark = pytest.mark.slow


def test_dask_local_cluster_matches_local_pool(tmp_path):
    spec = load_spec(write_sweep(tmp_path, name="dk"))
    lines = []
    results = run_dask(spec, range(len(spec.tasks)), n_workers=2, threads_per_worker=1, cores=2, log=lines.append)
    assert "LocalCluster with 2 worker process(es) x 1 thread(s)" in lines[0]
    assert "NUMBA_NUM_THREADS per task = 1" in lines[0]
    assert sorted(r.index for r in results) == list(range(len(spec.tasks)))
    assert {r.state for r in results} == {"done"}, [r.message for r in results]
    assert {r.numba_threads for r in results} == {1}
    write_manifest(spec)
    assert read_manifest(spec.output_dir)["counts"]["done"] == len(spec.tasks)

    ref = load_spec(write_sweep(tmp_path, name="ref"))
    assert {r.state for r in run_local(ref, range(len(ref.tasks)), workers=1, log=None)} == {"done"}
    assert_same_results(spec, ref)

    # a second dask run finds everything complete and rewrites nothing
    mtimes = [spec.output_path(t).stat().st_mtime_ns for t in spec.tasks]
    again = run_dask(spec, range(len(spec.tasks)), n_workers=2, threads_per_worker=1, cores=2, log=None)
    assert {r.state for r in again} == {"skipped"}
    assert mtimes == [spec.output_path(t).stat().st_mtime_ns for t in spec.tasks]


def test_tree_run_on_a_dask_local_cluster_is_the_single_process_file(tmp_path):
    """rg.pool_strategy = "tree": the samples built by 2 dask worker processes merge into the same file."""
    from distributed import Client, LocalCluster

    from blocksim import rg
    from blocksim.config import load_config
    from test_tree import assert_same_datasets

    cfg = load_config({"rg": {"pool_strategy": "tree", "steps": 2, "samples": 4, "min_effective_samples": 4},
                       "observables": {"temperatures": [0.05], "omega_points": 8, "omega_min": 1e-3,
                                       "omega_max": 10.0},
                       "run": {"seed": 4, "progress": "none"}})
    ref = rg.run(cfg, tmp_path / "one.h5")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        out = rg.run(cfg, tmp_path / "dask.h5", client=client)
        assert len(client.scheduler_info()["workers"]) == 2
        # the same from the shell: blocksim run --dask SCHEDULER
        conf = tmp_path / "tree.toml"
        conf.write_text(cfg.to_toml())
        proc = subprocess.run([sys.executable, "-m", "blocksim.cli", "run", str(conf), "-o", str(tmp_path / "cli.h5"),
                               "--dask", cluster.scheduler_address, "--no-plot"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "4 to build with dask" in proc.stderr
    assert_same_datasets(ref, out)
    assert_same_datasets(ref, tmp_path / "cli.h5")
