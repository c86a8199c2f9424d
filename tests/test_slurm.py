"""The SLURM executor on a real single-node SLURM started by the test (tests/slurm_cluster.py).

The module fixture starts munged, slurmctld and slurmd on 127.0.0.1 under a temporary directory and
kills them afterwards (also when a test fails). If SLURM cannot start, the tests fail when $CI is
set; elsewhere they are skipped only when the SLURM/munge programs are not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from blocksim.sweep import load_spec, task_state
from blocksim.sweep.executors import run_local, sweep_throughput
from blocksim.sweep.manifest import read_manifest
from slurm_cluster import LocalSlurm, SlurmStartError, slurm_binaries_missing
from test_sweep import assert_same_results, write_sweep

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PARTITION = "blocksim-test"


@pytest.fixture(scope="module")
def slurm():
    missing = slurm_binaries_missing()
    if missing and not os.environ.get("CI"):
        pytest.skip(f"SLURM/munge not installed (missing: {', '.join(missing)}); .ci/run installs them")
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("the local SLURM runs with SlurmUser=root and needs root")
    cluster = LocalSlurm(partition=PARTITION, cpus=2)
    try:
        cluster.start()
    except SlurmStartError as exc:
        cluster.stop()
        pytest.fail(f"could not start a local SLURM: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def blocksim(*argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blocksim.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def test_cluster_is_up(slurm):
    assert slurm.node_state() == "idle"
    assert PARTITION in slurm.run("sinfo", "-h", "-o", "%R").stdout


def test_slurm_array_sweep_wait(slurm, tmp_path):
    body = f'[slurm]\npartition = "{PARTITION}"\ntime = "00:05:00"\nmem = "200M"\nthrottle = 2\n'
    path = write_sweep(tmp_path, name="sl", body=body)
    spec = load_spec(path)
    assert len(spec.tasks) == 4
    proc = blocksim("sweep", path, "--executor", "slurm", "--wait", "--poll", "0.5", "--timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted array job" in proc.stdout and "4 done, 0 running, 0 failed, 0 missing" in proc.stdout
    script = (spec.output_dir / "sl.sbatch").read_text()
    assert "#SBATCH --array=0-3%2" in script and f"#SBATCH --partition={PARTITION}" in script
    for task in spec.tasks:
        assert spec.output_path(task).is_file() and not spec.part_path(task).exists()
        st = task_state(spec, task)
        assert st.state == "done" and st.info["slurm_job"], st
    man = read_manifest(spec.output_dir)
    assert man["counts"] == {"done": 4, "running": 0, "failed": 0, "missing": 0}
    assert [t["state"] for t in man["tasks"]] == ["done"] * 4
    logs = sorted(spec.log_dir.glob("sl_*_*.out"))
    assert len(logs) == 4 and "NUMBA_NUM_THREADS=1" in logs[0].read_text()

    # bit-identical to the local process pool
    ref = load_spec(write_sweep(tmp_path, name="ref"))
    assert {r.state for r in run_local(ref, range(4), workers=2, log=None)} == {"done"}
    assert_same_results(spec, ref)

    # resubmitting finds nothing to do
    again = blocksim("sweep", path, "--executor", "slurm", "--wait", "--poll", "0.5")
    assert again.returncode == 0 and "nothing to submit" in again.stdout


def test_partition_missing_from_sinfo_exits_2(slurm, tmp_path):
    path = write_sweep(tmp_path, name="bad", body='[slurm]\npartition = "blocksim-tset"\n')
    proc = blocksim("sweep", path, "--executor", "slurm", "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not a partition of this cluster" in proc.stderr
    assert f"did you mean '{PARTITION}'" in proc.stderr


def test_throughput_hook_measures_slurm_overhead(slurm):
    res = sweep_throughput(workers=2, n_tasks=2)
    assert res["local_tasks_per_second"] > 0
    assert res["slurm_seconds"] is not None and res["slurm_overhead_per_task_seconds"] is not None
