"""Tests for blocksim.sweep: spec parsing and validation, task enumeration and seeds, the local
executor, resume after a kill, SIGTERM, status, manifest and merge. The dask and SLURM executors are
in test_dask.py and test_slurm.py; they reuse the helpers here."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from blocksim.cli import main
from blocksim.errors import InputError
from blocksim.sweep import load_spec, run_task, task_state
from blocksim.sweep.executors import array_ranges, render_sbatch, run_local
from blocksim.sweep.manifest import read_manifest
from blocksim.sweep.tasks import task_config

#: the smallest run the engine accepts: 2-level blocks, N0 = 2, one RG step, one final block.
TINY_BASE = """\
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

#: a slower run (for killing tasks midway): more steps, a bigger pool and the per-super-block solver
#: path (the batched one finishes before a signal can arrive).
SLOW_BASE = (TINY_BASE.replace("steps = 1", "steps = 2").replace("pool_size = 1", "pool_size = 2")
             + "[solver]\nbatched = false\n")



def write_sweep(tmp_path: Path, name: str = "sw", *, body: str = "", base: str = TINY_BASE, replicates: int = 2,
                grid: str = '"model.coupling" = [0.0, 0.05]', extra_sweep: str = "") -> Path:
    """Write base.toml and NAME.toml (a sweep over ``grid`` × replicates) into tmp_path; return its path."""
    (tmp_path / "base.toml").write_text(base)
    text = (f'base = "base.toml"\n\n[sweep]\nname = "{name}"\noutput_dir = "out/{name}"\nentropy = 1234\n'
            f'replicates = {replicates}\n{extra_sweep}\n')
    if grid:
        text += f"[grid]\n{grid}\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text + body)
    return path


def numeric_datasets(path) -> dict[str, np.ndarray]:
    """Every numeric dataset of an HDF5 file, by path (what "bit-identical results" compares)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc":
                out[name] = obj[()]
        f.visititems(visit)
    return out


def assert_identical_files(a, b) -> None:
    da, db = numeric_datasets(a), numeric_datasets(b)
    assert da.keys() == db.keys(), f"{a} and {b} hold different datasets"
    assert da, f"{a} holds no numeric datasets"
    for key in da:
        np.testing.assert_array_equal(da[key], db[key], err_msg=f"dataset {key} differs")


def assert_same_results(spec_a, spec_b) -> None:
    """Task i of spec_a and task i of spec_b wrote bit-identical numeric datasets, for every i."""
    assert len(spec_a.tasks) == len(spec_b.tasks)
    for ta, tb in zip(spec_a.tasks, spec_b.tasks):
        assert_identical_files(spec_a.output_path(ta), spec_b.output_path(tb))


def cli(*argv) -> int:
    return main([str(a) for a in argv])


# --------------------------------------------------------------------------------- enumeration
def test_enumeration_order_ids_and_seeds(tmp_path):
    body = '[zip]\n"model.cl_over_ct" = [1.5, 1.7]\n"lattice.n0" = [2, 3]\n'
    spec = load_spec(write_sweep(tmp_path, grid='"model.coupling" = [0.0, 0.05]\n"model.n" = [2, 3]',
                                 body=body, replicates=2), validate_configs=True)
    assert len(spec.tasks) == 2 * 2 * 2 * 2
    assert [t.index for t in spec.tasks] == list(range(16))
    # grid: first key slowest; then zip rows; replicates fastest
    assert spec.tasks[0].params == (("model.coupling", 0.0), ("model.n", 2), ("model.cl_over_ct", 1.5),
                                    ("lattice.n0", 2))
    assert spec.tasks[1].replicate == 1 and spec.tasks[1].params == spec.tasks[0].params
    assert dict(spec.tasks[2].params)["model.cl_over_ct"] == 1.7 and dict(spec.tasks[2].params)["lattice.n0"] == 3
    assert dict(spec.tasks[4].params)["model.n"] == 3
    assert dict(spec.tasks[8].params)["model.coupling"] == 0.05
    assert spec.tasks[0].task_id == "sw_coupling_0.0_n_2_cl_over_ct_1.5_n0_2_rep_0"
    assert len({t.filename for t in spec.tasks}) == 16
    # stable: a second load gives the same ids, and seeds depend on the index only
    again = load_spec(spec.path)
    assert [t.task_id for t in again.tasks] == [t.task_id for t in spec.tasks]
    cfg = task_config(spec, spec.tasks[5])
    assert cfg.run.seed == 1234 and tuple(cfg.run.spawn_key) == (5,)
    assert cfg.model.coupling == 0.0 and cfg.model.n == 3 and cfg.lattice.n0 == 2 and cfg.model.cl_over_ct == 1.5
    ss = spec.seed_sequence(spec.tasks[5])
    assert ss.entropy == 1234 and ss.spawn_key == (5,)


def test_nested_grid_tables_and_filename_formats(tmp_path):
    path = write_sweep(tmp_path, grid="model.coupling = [0.01, 0.02]",
                       extra_sweep='filename = {"model.coupling" = "g{:.2f}"}', replicates=1)
    spec = load_spec(path)
    assert [t.task_id for t in spec.tasks] == ["sw_g0.01", "sw_g0.02"]


def test_filename_collision_is_rejected(tmp_path):
    path = write_sweep(tmp_path, grid='"model.coupling" = [0.011, 0.012]',
                       extra_sweep='filename = {"model.coupling" = "g{:.1f}"}', replicates=1)
    with pytest.raises(InputError, match="would both write sw_g0.0.h5"):
        load_spec(path)


def test_array_ranges():
    assert array_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert array_ranges([3], throttle=4) == "3%4"


INVALID = [
    pytest.param('[sweep]\nname = "x"\nentropy = 1\nreplicatse = 2\nbase = {}\n', "did you mean 'replicates'",
                 id="unknown-sweep-key"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[grid]\n"model.coupl" = [0.1]\n',
                 "coupl", id="unknown-config-key"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[grid]\n"model.coupling" = []\n', "empty list",
                 id="empty-grid-axis"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[grid]\n', "grid: empty", id="empty-grid"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[grid]\n"model.coupling" = ["a", "b"]\n',
                 "coupling", id="type-mismatch"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[grid]\n"model.coupling" = [0.1, "b"]\n',
                 "mixed types", id="mixed-types"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\nreplicates = "2"\n[base]\n', "expected an integer",
                 id="replicates-type"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\nreplicates = 0\n[base]\n', "replicates: 0 must be >= 1",
                 id="replicates-zero"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[zip]\n"model.coupling" = [0.1, 0.2]\n'
                 '"model.n" = [2]\n', "equal lengths", id="zip-lengths"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[grid]\n"run.seed" = [1, 2]\n', "replicates",
                 id="swept-seed"),
    pytest.param('[sweep]\nname = "x"\n[base]\n', "sweep.entropy: missing", id="no-entropy"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n', "base: missing", id="no-base"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[slurm]\nmem = "lots"\n', "slurm.mem",
                 id="slurm-mem"),
    pytest.param('[sweep]\nname = "x"\nentropy = 1\n[base]\n[dask]\ncluster = "lcoal"\n',
                 "did you mean 'local'", id="dask-cluster"),
]


@pytest.mark.parametrize("text, message", INVALID)
def test_invalid_specs_exit_2_with_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert cli("sweep", path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("blocksim: error: "), err
    assert message in err


def test_partition_outside_template_list_exits_2(tmp_path, capsys, monkeypatch):
    # no SLURM controller answers here, so the template's allowed-partitions line decides
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    path = write_sweep(tmp_path, body='[slurm]\npartition = "nromal"\n')
    assert cli("sweep", path, "--executor", "slurm", "--dry-run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not among the template's allowed partitions" in err
    assert "did you mean 'normal'" in err


def test_dry_run_script(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    path = write_sweep(tmp_path, body='[slurm]\npartition = "normal"\nthrottle = 3\ntime = "00:10:00"\n'
                                      'extra = ["--account=glass"]\n',
                       extra_sweep='hdf5_file_locking = false')
    assert cli("sweep", path, "--executor", "slurm", "--dry-run") == 0
    spec = load_spec(path)
    script = (spec.output_dir / "sw.sbatch").read_text()
    assert "#SBATCH --array=0-3%3" in script and "#SBATCH --partition=normal" in script
    assert "#SBATCH --account=glass" in script and "#SBATCH --time=00:10:00" in script
    assert "export HDF5_USE_FILE_LOCKING=FALSE" in script
    assert f"exec {shlex.quote(sys.executable)} -m blocksim.cli run-task {shlex.quote(str(path.resolve()))}" in script
    assert "{{" not in script
    assert not [p for p in spec.output_dir.glob("*.h5") if not p.name.startswith("manifest")]
    # the partition line disappears when none is set; the same function renders it
    no_part = load_spec(write_sweep(tmp_path, name="np"))
    assert "--partition" not in render_sbatch(no_part, [0, 1])


# ------------------------------------------------------------------------------- running tasks
def test_local_sweep_manifest_merge_and_identical_results(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert cli("sweep", path, "--workers", "2") == 0
    out = capsys.readouterr().out
    assert "2 worker process(es) x 1 numba thread(s)" in out and "NUMBA_NUM_THREADS=1" in out
    spec = load_spec(path)
    for task in spec.tasks:
        assert spec.output_path(task).is_file() and not spec.part_path(task).exists()
        with h5py.File(spec.output_path(task), "r") as f:
            assert f.attrs["status"] == "complete"
    man = read_manifest(spec.output_dir)
    assert man["counts"] == {"done": 4, "running": 0, "failed": 0, "missing": 0}
    assert [t["file"] for t in man["tasks"]] == [t.filename for t in spec.tasks]
    assert man["tasks"][3]["params"] == {"model.coupling": 0.05} and man["tasks"][3]["spawn_key"] == [3]
    assert all(t["numba_threads"] == 1 for t in man["tasks"])
    with h5py.File(spec.output_dir / "manifest.h5", "r") as f:
        assert list(f["tasks/params/model.coupling"][()]) == [0.0, 0.0, 0.05, 0.05]
        assert [s.decode() for s in f["tasks/state"][()]] == ["done"] * 4

    # replicates differ (different seeds), the same index gives the same numbers
    a, b = (numeric_datasets(spec.output_path(t)) for t in spec.tasks[:2])
    assert any(not np.array_equal(a[k], b[k]) for k in a if k.startswith("steps"))

    # one worker, and the run-task entry point, give bit-identical files
    one = load_spec(write_sweep(tmp_path, name="one"))
    assert cli("sweep", one.path, "--workers", "1") == 0
    assert_same_results(spec, one)
    direct = load_spec(write_sweep(tmp_path, name="direct"))
    for i in range(len(direct.tasks)):
        proc = subprocess.run([sys.executable, "-m", "blocksim.cli", "run-task", direct.path, "--index", str(i)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert_same_results(spec, direct)

    # merge
    summary = tmp_path / "summary.h5"
    assert cli("merge", path, "-o", summary) == 0
    with h5py.File(summary, "r") as f:
        assert f.attrs["format"] == "blocksim-sweep-summary" and f.attrs["n_merged"] == 4
        assert list(f["tasks/params/model.coupling"][()]) == [0.0, 0.0, 0.05, 0.05]
        for task in spec.tasks:
            g = f["runs"][task.task_id]
            assert g.attrs["model.coupling"] == dict(task.params)["model.coupling"]
            with h5py.File(spec.output_path(task), "r") as src:
                for name, ds in src["summary"].items():
                    np.testing.assert_array_equal(g["summary"][name][()], ds[()])
                    if ds.ndim == 1 and ds.dtype.kind in "biuf":
                        row = f["stacked"][name][task.index]
                        np.testing.assert_array_equal(row[: len(ds)], ds[()].astype(float))
        assert list(f["stacked/length"][()]) == [len(f["runs"][t.task_id]["summary"]["mb_ratio"]) for t in spec.tasks]

    # a rerun skips everything
    mtimes = [spec.output_path(t).stat().st_mtime_ns for t in spec.tasks]
    assert cli("sweep", path) == 0
    assert "4 already done" in capsys.readouterr().out
    assert mtimes == [spec.output_path(t).stat().st_mtime_ns for t in spec.tasks]


def test_failed_task_reported_and_rerun(tmp_path, capsys):
    path = write_sweep(tmp_path, replicates=1)
    spec = load_spec(path)
    blocker = spec.part_path(spec.tasks[1])
    blocker.mkdir(parents=True)  # a directory where the .part file must go: the run fails
    assert cli("sweep", path, "--workers", "1") == 1
    out = capsys.readouterr().out
    assert "1 done, 0 running, 1 failed, 0 missing" in out and "task 1" in out
    assert cli("sweep-status", path) == 0
    out = capsys.readouterr().out
    assert "1 done, 0 running, 1 failed, 0 missing" in out
    assert f"task 1 ({spec.tasks[1].task_id}) failed:" in out
    assert read_manifest(spec.output_dir)["tasks"][1]["state"] == "failed"
    blocker.rmdir()
    done_mtime = spec.output_path(spec.tasks[0]).stat().st_mtime_ns
    assert cli("sweep", path) == 0
    assert "1 already done" in capsys.readouterr().out
    assert spec.output_path(spec.tasks[0]).stat().st_mtime_ns == done_mtime
    assert task_state(spec, spec.tasks[1]).state == "done"


def test_numba_threads_times_workers_within_cores(tmp_path):
    path = write_sweep(tmp_path, replicates=1, extra_sweep="numba_threads = 4")
    spec = load_spec(path)
    lines = []
    results = run_local(spec, [0, 1], workers=2, cores=2, log=lines.append)
    assert "NUMBA_NUM_THREADS=1" in lines[0]
    assert {r.numba_threads for r in results} == {1}
    info = json.loads((spec.state_dir / f"{spec.tasks[0].task_id}.json").read_text())
    assert info["numba_threads"] == 1


def test_hdf5_file_locking_option(tmp_path):
    path = write_sweep(tmp_path, replicates=1, grid='"model.coupling" = [0.0]', extra_sweep="hdf5_file_locking = false")
    spec = load_spec(path)
    res = run_local(spec, [0], workers=1, log=None)
    assert res[0].state == "done"
    info = json.loads((spec.state_dir / f"{spec.tasks[0].task_id}.json").read_text())
    assert info["hdf5_file_locking"] == "FALSE"


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_midway_then_rerun_completes_only_missing(tmp_path, capsys):
    path = write_sweep(tmp_path, base=SLOW_BASE, replicates=8, grid="")
    spec = load_spec(path)
    proc = subprocess.Popen([sys.executable, "-m", "blocksim.cli", "sweep", str(path), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: spec.output_path(spec.tasks[1]).exists() or proc.poll() is not None, 240,
                  "two finished tasks")
        assert proc.poll() is None, "the sweep ended before it could be killed: " + str(
            [task_state(spec, t).message for t in spec.tasks[:1]])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, with no chance to clean up
        proc.wait(timeout=30)
    done_before = {t.index: spec.output_path(t).stat().st_mtime_ns for t in spec.tasks
                   if spec.output_path(t).exists()}
    assert 2 <= len(done_before) < len(spec.tasks), "the kill came too late to test a resume"
    # the kernel releases the killed worker's lock once the process is gone: then nothing is "running"
    _wait_for(lambda: all(task_state(spec, t).state != "running" for t in spec.tasks), 30, "the lock's release")
    assert {task_state(spec, t).state for t in spec.tasks} <= {"done", "failed", "missing"}
    assert cli("sweep", path, "--workers", "1") == 0
    out = capsys.readouterr().out
    assert f"{len(done_before)} already done" in out
    assert f"{len(spec.tasks) - len(done_before)} to run" in out
    for t in spec.tasks:
        assert task_state(spec, t).state == "done"
        if t.index in done_before:
            assert spec.output_path(t).stat().st_mtime_ns == done_before[t.index]
    assert read_manifest(spec.output_dir)["counts"]["done"] == len(spec.tasks)
    assert not list(spec.output_dir.glob("*.part"))
    # a resumed or restarted task gives the same numbers as an uninterrupted run
    ref = load_spec(write_sweep(tmp_path, name="ref", base=SLOW_BASE, replicates=8, grid=""))
    for i in sorted(set(range(len(spec.tasks))) - set(done_before))[:1]:
        assert run_task(ref, i).state == "done"
        assert_identical_files(spec.output_path(spec.tasks[i]), ref.output_path(ref.tasks[i]))


@pytest.mark.slow
def test_sigterm_closes_task_cleanly(tmp_path):
    # steps = 5: ≈ 10 s of work after the .part file appears (steps = 4 took ≈ 1.5 s once the solvers got faster,
    # and the task could finish before the signal)
    path = write_sweep(tmp_path, base=SLOW_BASE.replace("steps = 2", "steps = 5"), replicates=1,
                       grid='"model.coupling" = [0.0]')
    spec = load_spec(path)
    task = spec.tasks[0]
    proc = subprocess.Popen([sys.executable, "-m", "blocksim.cli", "run-task", str(path), "--index", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = spec.state_dir / f"{task.task_id}.json"
    _wait_for(lambda: spec.part_path(task).exists() or proc.poll() is not None, 120, "the task's .part file")
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.fail("the task finished before SIGTERM arrived; use a slower config")
    assert proc.returncode == 143, err
    info = json.loads(status.read_text())
    assert info["status"] == "failed" and "SIGTERM" in info["message"]
    with h5py.File(spec.part_path(task), "r") as f:  # closed cleanly: it opens
        assert f.attrs.get("status") != "complete"
    st = task_state(spec, task)
    assert st.state == "failed" and "SIGTERM" in st.message
    assert run_task(spec, 0).state == "done"
    assert not spec.part_path(task).exists()
