"""The SLURM executor on a real single-node SLURM started by the test (tests/slurm_cluster.py).

The module fixture starts munged, slurmctld and slurmd on 127.0.0.1 under a temporary directory and
kills them afterwards (also when a test fails). If SLURM cannot start, the tests fail when $CI is
set; elsewhere they are skipped only when the SLURM/munge programs are not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blocksim.sweep import load_spec, task_state
from benchmarks.sweep import sweep_throughput
from blocksim.sweep.executors import run_local
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



DOC_MARKER = "<!-- tested by tests/test_slurm.py::test_dask_slurmcluster_sweep_wait -->"


def jobqueue_body(tmp_path, **override) -> str:
    """The ``[dask] cluster = "slurm"`` example of docs/sweeps.md with its paths in tmp_path (and the
    interpreter running the tests), and ``override``'s ``[dask.jobqueue]`` lines (TOML values)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "sweeps.md").read_text()
    block = doc.split(DOC_MARKER, 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    opts = {"python": f'"{sys.executable}"', "local_directory": f'"{tmp_path / "dask-scratch"}"',
            "log_directory": f'"{tmp_path / "dask-logs"}"', **override}
    lines = []
    for line in block.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and key in opts:
            line = f"{key} = {opts.pop(key)}"
        lines.append(line)
    assert any(line.startswith("[dask.jobqueue]") for line in lines), block
    return "\n".join(lines + [f"{k} = {v}" for k, v in opts.items()]) + "\n"


def wait_queue_empty(slurm, name: str, timeout: float = 20.0) -> str:
    """squeue's lines for job name ``name`` once they are gone (or whatever is left after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        left = slurm.run("squeue", "-h", "-n", name, "-o", "%i %T", check=False).stdout.strip()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_dask_slurmcluster_sweep_wait(slurm, tmp_path):
    """``[dask] cluster = "slurm"``: dask-jobqueue submits one SLURM job per dask worker to the test
    cluster, the tasks run inside those jobs and write the same files, bit for bit, as the local
    process pool, and the jobs are cancelled when the sweep returns."""
    pytest.importorskip("dask_jobqueue", reason="[dask] cluster = 'slurm' needs dask-jobqueue (test extra)")
    path = write_sweep(tmp_path, name="dkjq", body=jobqueue_body(tmp_path))
    spec = load_spec(path)
    assert len(spec.tasks) == 4
    proc = blocksim("sweep", path, "--executor", "dask", "--wait", "--timeout", "60", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dask-jobqueue SLURMCluster, 2 SLURM job(s), scheduler tcp://127.0.0.1:" in proc.stdout
    assert "4 done, 0 running, 0 failed, 0 missing" in proc.stdout

    # two worker jobs ran on the test cluster, each a dask worker on loopback registered with the scheduler
    logs = {p.stem.split("-")[-1]: p.read_text() for p in (tmp_path / "dask-logs").glob("dkjq-*.err")}
    assert len(logs) == 2, sorted(logs)
    for text in logs.values():
        assert "Listening to:      tcp://127.0.0.1:" in text and "Registered to:      tcp://127.0.0.1:" in text
    # every task ran inside one of them (run_task records $SLURM_JOB_ID), all complete
    for task in spec.tasks:
        assert spec.output_path(task).is_file() and not spec.part_path(task).exists()
        st = task_state(spec, task)
        assert st.state == "done" and st.info["slurm_job"] in logs, (st, sorted(logs))
    assert read_manifest(spec.output_dir)["counts"] == {"done": 4, "running": 0, "failed": 0, "missing": 0}
    # closing the cluster cancelled the worker jobs
    assert wait_queue_empty(slurm, "dkjq") == ""
    assert all("CANCELLED" in text for text in logs.values())

    # bit-identical to the local process pool
    ref = load_spec(write_sweep(tmp_path, name="ref"))
    assert {r.state for r in run_local(ref, range(4), workers=2, log=None)} == {"done"}
    assert_same_results(spec, ref)

    # a second sweep finds everything done and submits no job
    again = blocksim("sweep", path, "--executor", "dask", "--wait", timeout=60)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr
    assert len(list((tmp_path / "dask-logs").glob("dkjq-*.err"))) == 2


def test_dask_slurmcluster_failures_are_reported_and_cleaned_up(slurm, tmp_path):
    """A job script sbatch rejects is an input error (exit 2, nothing submitted); worker jobs that die
    before a worker connects end the sweep with an error instead of waiting forever, and leave no job."""
    pytest.importorskip("dask_jobqueue", reason="[dask] cluster = 'slurm' needs dask-jobqueue (test extra)")
    bad = write_sweep(tmp_path, name="badq", body=jobqueue_body(tmp_path, queue='"blocksim-tset"'))
    proc = blocksim("sweep", bad, "--executor", "dask", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "sbatch rejects the dask worker job script" in proc.stderr
    typo = write_sweep(tmp_path, name="typo", body=jobqueue_body(tmp_path, walltme='"00:05:00"'))
    proc = blocksim("sweep", typo, "--executor", "dask", timeout=60)
    assert proc.returncode == 2 and "did you mean 'walltime'" in proc.stderr, proc.stderr

    dead = write_sweep(tmp_path, name="dead", body=jobqueue_body(tmp_path, python='"/nonexistent/python3"'))
    t0 = time.monotonic()
    proc = blocksim("sweep", dead, "--executor", "dask", timeout=90)
    assert proc.returncode != 0 and "ended before a dask worker connected" in proc.stderr, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 45
    assert wait_queue_empty(slurm, "dkjq") == ""
    spec = load_spec(dead)
    assert {task_state(spec, t).state for t in spec.tasks} == {"missing"}


TREE_DOC_MARKER = "<!-- tested by tests/test_slurm.py::test_tree_run_over_a_slurm_array -->"


def test_tree_run_over_a_slurm_array(slurm, tmp_path):
    """The K = 9–10 recipe of docs/tree.md on the test cluster (K = 2, 5 samples, 3 array tasks): the array
    builds the shards, a dependent job merges them, and the file is the single-process file, dataset for
    dataset."""
    from blocksim import rg
    from blocksim.config import load_config
    from test_tree import assert_same_datasets

    doc = (Path(__file__).resolve().parents[1] / "docs" / "tree.md").read_text()
    after = doc.split(TREE_DOC_MARKER, 1)[1]
    script, submit = (block.split("```", 1)[0] for block in after.split("```bash\n")[1:3])
    cli = f"{sys.executable} -m blocksim.cli "
    script = (script.replace("--array=0-63", "--array=0-2").replace("/64", "/3").replace("blocksim run ", cli + "run ")
              .replace("--time=48:00:00", "--time=00:05:00").replace("--mem=1G", "--mem=300M"))
    assert "--tree-shard ${SLURM_ARRAY_TASK_ID}/3" in script
    (tmp_path / "tree-array.sbatch").write_text(script)
    cfg = load_config({"rg": {"pool_strategy": "tree", "steps": 2, "samples": 5, "min_effective_samples": 4},
                       "observables": {"temperatures": [0.05], "omega_points": 8, "omega_min": 1e-3,
                                       "omega_max": 10.0},
                       "run": {"seed": 9, "progress": "none"}})
    (tmp_path / "tree.toml").write_text(cfg.to_toml())
    ref = rg.run(cfg, tmp_path / "ref.h5")

    env = dict(slurm.env, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    lines = [line for line in submit.strip().splitlines() if line.strip()]
    assert lines[0] == "job=$(sbatch --parsable tree-array.sbatch)"
    merge = lines[1].replace("blocksim run ", cli + "run ")
    text = f"set -e\n{lines[0]}\n{merge}\necho $job\n"
    proc = subprocess.run(["bash", "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.monotonic() + 240
    while slurm.run("squeue", "-h", "-o", "%i %T", check=False).stdout.strip():
        assert time.monotonic() < deadline, slurm.run("squeue", check=False).stdout
        time.sleep(0.5)
    out = tmp_path / "tree.h5"
    assert out.is_file(), [p.read_text() for p in tmp_path.glob("slurm-*.out")]
    logs = sorted(tmp_path.glob("slurm-*.out"))
    assert len(logs) == 4  # three array tasks and the merge job
    assert_same_datasets(ref, out)
