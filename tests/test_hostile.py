"""Hostile input, concurrent use and batch-script safety (issue 14).

Each case ends in a one-line error with exit code 2 and no traceback, or in correct behaviour; no
partial file is left and no earlier result is lost. Cases by category (39 cases, 48 tests):

* Security, 10 cases (13 tests): shell injection through the sweep's directory name (the rendered
  script run under bash with a fake array id; and through the real local SLURM), the python path, a
  custom template that quotes its placeholders, a newline in ``sweep.output_dir``, a newline in the
  sweep's directory, a ``"`` or ``%`` in the directory (sbatch cannot quote it; 2 tests), a control
  character in ``slurm.extra``, a runner that cannot be imported (refused at load time; 3 tests), the
  "Security" paragraph of docs/sweeps.md.
* Concurrent writers and stale files, 7 cases (7 tests): a second run on a locked output (names the
  first, touches nothing), a stale lock of a dead process (taken over), a lock from another host
  (refused, names the file), unique temporary names, a stale ``.part`` (refused; ``--force`` discards
  it), ``merge -o EXISTING`` (needs ``--force``), ``merge -o`` onto a task file (always refused).
* Bad values and paths, 10 cases (13 tests): ``run.seed`` and a ``run.spawn_key`` entry ≥ 2^64 (2
  tests), ``sweep.entropy`` ≥ 2^64, an unreadable config, a config path containing ``=``, an output
  whose parent is a file, an unwritable output directory, ``-o`` an existing directory, a truncated
  and a random-bytes ``.part`` under ``--resume`` (2 tests), the same trajectory damage under
  ``analyze`` (2 tests), a file without ``config_toml``.
* Silent wrong results, 9 cases (12 tests): one changed float in a ``.part`` (``--resume`` refuses:
  checksum) and in a finished file (every reader refuses), every dataset carries a checksum, a
  multi-line override (3 tests), ``analyze`` on a running file (refused; ``--partial`` warns: 2
  tests), ``analyze`` on a 1-step file (refused before writing), ``analyze`` on the merged sweep
  summary, ``sweep.name = ".."``, a dask sweep whose only worker dies after tasks started.
* Small things a user notices, 3 cases (3 tests): no matplotlib (plot skipped, said once, exit 0),
  matplotlib's font-cache messages kept out of the terminal, the README example writes only to a
  temporary directory (tests/test_readme.py).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from blocksim.cli import main
from blocksim.errors import InputError
from blocksim.io import open_trajectory, part_path
from blocksim.outputlock import OutputLock, lock_path
from blocksim.sweep import load_spec, task_state
from blocksim.sweep.executors import render_sbatch, run_local
from test_runner import LONG, TINY
from test_slurm import PARTITION, slurm  # noqa: F401  (the real local SLURM fixture)
from test_sweep import TINY_BASE, write_sweep

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_DIR = "x$(touch pwned1)y `touch pwned2` ; z"


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def one_line_error(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("blocksim: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err
    return err


def blocksim_proc(*argv, env=None, cwd=None, prefix=(), timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "blocksim.cli", *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


def no_pwned(*dirs) -> bool:
    return not any(p.name.startswith("pwned") for d in dirs for p in Path(d).rglob("*"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A complete 2-step trajectory and its config."""
    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny.toml").write_text(TINY)
    assert main(["run", str(d / "tiny.toml"), "-o", str(d / "tiny.h5"), "--no-plot", "-q"]) == 0
    return d


def copy_of(tiny, tmp_path, name="t.h5") -> Path:
    dst = tmp_path / name
    shutil.copyfile(tiny / "tiny.h5", dst)
    return dst


def as_part(tiny, tmp_path) -> tuple[Path, Path]:
    """OUT.h5 and OUT.h5.part, the latter a copy of the finished run marked "failed" (resumable)."""
    out = tmp_path / "r.h5"
    part = part_path(out)
    shutil.copyfile(tiny / "tiny.h5", part)
    with h5py.File(part, "a") as f:
        f.attrs["status"] = "failed"
    return out, part


def float_offset(path, dataset) -> int:
    """File offset of the first element of an uncompressed, contiguous float64 dataset."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        assert ds.compression is None and ds.chunks is None and ds.dtype == np.float64
        return ds.id.get_offset()


def change_one_float(path, dataset) -> None:
    off = float_offset(path, dataset)
    with open(path, "r+b") as fh:
        fh.seek(off)
        value = np.frombuffer(fh.read(8), dtype="<f8")[0]
        fh.seek(off)
        fh.write(np.array([value * 1.0001 + 1e-3], dtype="<f8").tobytes())


def without_dac():
    """Command prefix that drops root's permission override, so file modes apply (or () if not root)."""
    if os.geteuid() != 0:
        return ()
    exe = shutil.which("setpriv")
    if exe is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    return (exe, "--bounding-set=-dac_override,-dac_read_search")


# =====================================================================================================
# Security (10)
# =====================================================================================================
def hostile_sweep(tmp_path, name="hs", body=""):
    d = tmp_path / HOSTILE_DIR
    d.mkdir(exist_ok=True)
    return write_sweep(d, name=name, replicates=1, grid="", body=body), d


def test_security_injection_in_sweep_dir_rendered_script_under_bash(tmp_path):
    path, d = hostile_sweep(tmp_path)
    spec = load_spec(path)
    text = render_sbatch(spec, [0])
    assert f"--chdir=\"{spec.output_dir}\"" in text
    spec.output_dir.mkdir(parents=True)
    script = tmp_path / "job.sh"
    script.write_text(text)
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0", SLURM_ARRAY_JOB_ID="99")
    proc = subprocess.run(["bash", str(script)], cwd=spec.output_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert task_state(spec, spec.tasks[0]).state == "done"
    assert no_pwned(tmp_path), "a substituted value was executed by the shell"


@pytest.mark.slurm
@pytest.mark.slow
def test_security_injection_in_sweep_dir_through_real_slurm(slurm, tmp_path):  # noqa: F811
    body = f'[slurm]\npartition = "{PARTITION}"\ntime = "00:05:00"\nmem = "200M"\n'
    path, d = hostile_sweep(tmp_path, name="hsl", body=body)
    proc = blocksim_proc("sweep", path, "--executor", "slurm", "--wait", "--poll", "0.5", "--timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = load_spec(path)
    assert task_state(spec, spec.tasks[0]).state == "done"
    assert list(spec.log_dir.glob("hsl_*_0.out")), "the #SBATCH --output path was not honoured"
    assert no_pwned(tmp_path)


def test_security_python_path_is_quoted(tmp_path):
    path = write_sweep(tmp_path, replicates=1, grid="")
    spec = load_spec(path)
    spec.output_dir.mkdir(parents=True)
    script = tmp_path / "job.sh"
    script.write_text(render_sbatch(spec, [0], python=str(tmp_path / "$(touch pwned3)" / "python")))
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=dict(os.environ, SLURM_ARRAY_TASK_ID="0"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0  # no such interpreter; the point is that nothing else ran
    assert no_pwned(tmp_path)


def test_security_custom_template_with_quoted_placeholders(tmp_path):
    template = (ROOT / "runs/slurm/job_array.sbatch.template").read_text().replace(
        "exec {{python}} -m blocksim.cli run-task {{sweep_file}}", 'exec "{{python}}" -m blocksim.cli run-task "{{sweep_file}}"')
    (tmp_path / HOSTILE_DIR).mkdir()
    (tmp_path / HOSTILE_DIR / "old.sbatch.template").write_text(template)
    path, _ = hostile_sweep(tmp_path, body='[slurm]\ntemplate = "old.sbatch.template"\n')
    text = render_sbatch(load_spec(path), [0])
    assert f"run-task {shlex.quote(str(path))} --index" in text
    assert f'"{shlex.quote(str(path))}"' not in text


def test_security_newline_in_output_dir_refused(tmp_path, capsys):
    path = write_sweep(tmp_path, extra_sweep="").read_text().replace('output_dir = "out/sw"',
                                                                    'output_dir = "out\\n#SBATCH --wrap=id"')
    (tmp_path / "nl.toml").write_text(path)
    assert cli("sweep", tmp_path / "nl.toml", "--executor", "slurm", "--dry-run") == 2
    one_line_error(capsys, "sweep.output_dir", "control characters")
    assert not (tmp_path / "out").exists()


def test_security_newline_in_sweep_directory_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    d = tmp_path / "a\nb"
    d.mkdir()
    path = write_sweep(d, replicates=1, grid="")
    assert cli("sweep", path, "--executor", "slurm", "--dry-run") == 2
    one_line_error(capsys, "control character")
    assert not list(d.rglob("*.sbatch"))


@pytest.mark.parametrize("char", ['"', "%"], ids=["double-quote", "percent"])
def test_security_unquotable_sbatch_path_refused(tmp_path, capsys, monkeypatch, char):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    d = tmp_path / f"a{char}b"
    d.mkdir()
    path = write_sweep(d, replicates=1, grid="")
    assert cli("sweep", path, "--executor", "slurm", "--dry-run") == 2
    one_line_error(capsys, "cannot quote")


def test_security_control_character_in_slurm_extra_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    path = write_sweep(tmp_path, body='[slurm]\nextra = ["--account=a\\rb"]\n')
    assert cli("sweep", path, "--executor", "slurm", "--dry-run") == 2
    one_line_error(capsys, "slurm.extra", "control character")


@pytest.mark.parametrize("runner, fragment", [
    pytest.param("no_such_module_xyz:run", "cannot import", id="missing-module"),
    pytest.param("blocksim:no_such_function", "cannot import", id="missing-function"),
    pytest.param("blocksim:__version__", "not callable", id="not-callable"),
])
def test_security_runner_checked_at_load(tmp_path, capsys, runner, fragment):
    path = write_sweep(tmp_path, extra_sweep=f'runner = "{runner}"')
    assert cli("sweep", path) == 2
    one_line_error(capsys, "sweep.runner", fragment)
    assert not (tmp_path / "out").exists()


def test_security_docs_paragraph():
    text = (ROOT / "docs/sweeps.md").read_text()
    section = text.split("### Security", 1)[1].split("\n## ", 1)[0]
    assert "sweep.runner" in section and "trusted" in section and "shlex.quote" in section


# =====================================================================================================
# Concurrent writers and stale files (7)
# =====================================================================================================
def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_concurrent_second_run_refused_and_names_the_first(tmp_path, capsys):
    (tmp_path / "long.toml").write_text(LONG)
    out = tmp_path / "o.h5"
    part = part_path(out)
    first = subprocess.Popen([sys.executable, "-m", "blocksim.cli", "run", str(tmp_path / "long.toml"), "-o",
                              str(out), "--no-plot", "-q"], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: part.exists() or first.poll() is not None, 120, "the first run's .part")
        first.send_signal(signal.SIGSTOP)  # hold it mid-run, deterministically
        assert first.poll() is None, "the first run ended before the test could overlap it"
        before = part.read_bytes()
        for extra in ([], ["--force"], ["--resume"], ["-s", "run.seed=2", "--force"]):
            assert cli("run", tmp_path / "long.toml", "-o", out, "--no-plot", "-q", *extra) == 2
            one_line_error(capsys, "in use by another blocksim run", f"pid {first.pid}", socket.gethostname())
        assert part.read_bytes() == before
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)  # also closes the pipe when an assertion above failed
    assert first.returncode == 0, err
    with open_trajectory(out) as tr:
        assert tr.status == "complete" and tr.run_config.run.seed == 7
    assert not lock_path(out).exists() and not part.exists()


def test_concurrent_stale_lock_of_dead_process_is_taken_over(tiny, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "s.h5"
    lock_path(out).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    assert cli("run", tiny / "tiny.toml", "-o", out, "--no-plot", "-q") == 0
    assert out.is_file() and not lock_path(out).exists()


def test_concurrent_lock_from_another_host_refused(tiny, tmp_path, capsys):
    out = tmp_path / "h.h5"
    lock_path(out).write_text(json.dumps({"pid": 1, "host": "node-elsewhere-17", "started": "x"}))
    assert cli("run", tiny / "tiny.toml", "-o", out, "--no-plot", "-q") == 2
    one_line_error(capsys, "node-elsewhere-17", f"delete {str(lock_path(out))!r}")
    assert not out.exists() and not part_path(out).exists()


def test_concurrent_unique_tmp_names(tiny, tmp_path):
    from blocksim.io import _tmp_name

    names = {_tmp_name(tmp_path / "x.h5.part") for _ in range(50)}
    assert len(names) == 50 and all(str(os.getpid()) in n.name for n in names)
    with OutputLock(tmp_path / "y.h5") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert cli("run", tiny / "tiny.toml", "-o", tmp_path / "u.h5", "--no-plot", "-q") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.h5"]


def test_stale_part_refused_then_force(tiny, tmp_path, capsys):
    out, part = as_part(tiny, tmp_path)
    before = part.read_bytes()
    assert cli("run", tiny / "tiny.toml", "-o", out, "--no-plot", "-q") == 2
    one_line_error(capsys, "partial file", "--resume", "--force")
    assert part.read_bytes() == before and not out.exists()
    assert cli("run", tiny / "tiny.toml", "-o", out, "--no-plot", "-q", "--force") == 0
    assert out.is_file() and not part.exists()


@pytest.fixture(scope="module")
def merged_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    path = write_sweep(d, name="ms", base=TINY_BASE.replace("steps = 1", "steps = 2"), replicates=2)
    spec = load_spec(path)
    assert {r.state for r in run_local(spec, range(len(spec.tasks)), workers=1, log=None)} == {"done"}
    assert main(["merge", str(path), "-o", str(d / "summary.h5")]) == 0
    return path, spec, d / "summary.h5"


def test_merge_existing_output_needs_force(merged_sweep, tmp_path, capsys):
    path, spec, _ = merged_sweep
    target = tmp_path / "sum.h5"
    target.write_bytes(b"precious")
    assert cli("merge", path, "-o", target) == 2
    one_line_error(capsys, "exists", "--force")
    assert target.read_bytes() == b"precious"
    assert cli("merge", path, "-o", target, "--force") == 0
    with h5py.File(target, "r") as f:
        assert f.attrs["format"] == "blocksim-sweep-summary"


def test_merge_onto_a_task_file_always_refused(merged_sweep, capsys):
    path, spec, _ = merged_sweep
    task_file = spec.output_path(spec.tasks[1])
    before = task_file.read_bytes()
    for extra in ([], ["--force"]):
        assert cli("merge", path, "-o", task_file, *extra) == 2
        one_line_error(capsys, "the sweep's own files")
    assert task_file.read_bytes() == before and task_state(spec, spec.tasks[1]).state == "done"


# =====================================================================================================
# Bad values and paths (13)
# =====================================================================================================
@pytest.mark.parametrize("override, fragment", [
    pytest.param("run.seed=18446744073709551616", "run.seed", id="seed-2^64"),
    pytest.param("run.spawn_key=[1, 18446744073709551616]", "run.spawn_key", id="spawn-key-2^64"),
])
def test_bad_seed_bounds(tiny, tmp_path, capsys, override, fragment):
    assert cli("run", tiny / "tiny.toml", "-o", tmp_path / "b.h5", "-s", override) == 2
    one_line_error(capsys, fragment, "2^64")
    assert not list(tmp_path.iterdir())


def test_bad_entropy_bound(tmp_path, capsys):
    path = write_sweep(tmp_path).read_text().replace("entropy = 1234", "entropy = 18446744073709551616")
    (tmp_path / "e.toml").write_text(path)
    assert cli("sweep", tmp_path / "e.toml") == 2
    one_line_error(capsys, "sweep.entropy", "2^64")


def test_bad_unreadable_config(tmp_path):
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="blocksim-perm-"))
    try:
        cfg = d / "c.toml"
        cfg.write_text(TINY)
        cfg.chmod(0)
        proc = blocksim_proc("run", cfg, "-o", d / "x.h5", prefix=without_dac())
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "cannot be read" in proc.stderr
    finally:
        shutil.rmtree(d)


def test_bad_config_path_with_equals_sign(tmp_path, capsys):
    cfg = tmp_path / "g=0.1.toml"
    cfg.write_text(TINY)
    assert cli("run", cfg, "-o", tmp_path / "g.h5", "--no-plot", "-q") == 0
    with open_trajectory(tmp_path / "g.h5") as tr:
        assert tr.run_config.model.coupling == 0.02
    capsys.readouterr()  # the first run's warnings (its last step has 4 < rg.min_effective_samples samples)
    assert cli("run", tmp_path / "g=0.2.toml", "-o", tmp_path / "h.h5") == 2
    one_line_error(capsys, "file not found")
    from blocksim.config import load_config

    with pytest.raises(InputError, match="file not found"):
        load_config("g=0.2.toml")


def test_bad_output_parent_is_a_file(tiny, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli("run", tiny / "tiny.toml", "-o", tmp_path / "file" / "sub" / "o.h5") == 2
    one_line_error(capsys, "is not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_bad_output_directory_not_writable(tiny):
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="blocksim-perm-"))
    try:
        (d / "ro").mkdir()
        (d / "ro").chmod(0o555)
        proc = blocksim_proc("run", tiny / "tiny.toml", "-o", d / "ro" / "x.h5", prefix=without_dac())
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "not writable" in proc.stderr
        assert not list((d / "ro").iterdir())
    finally:
        shutil.rmtree(d)


def test_bad_output_is_an_existing_directory(tiny, tmp_path, capsys):
    (tmp_path / "d.h5").mkdir()
    progress = []
    with pytest.raises(InputError, match="is a directory"):
        import blocksim

        blocksim.run(tiny / "tiny.toml", tmp_path / "d.h5", force=True, progress=progress.append)
    assert progress == [], "a step ran before the output was checked"
    assert cli("run", tiny / "tiny.toml", "-o", tmp_path / "d.h5", "--force") == 2
    one_line_error(capsys, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _randomize(path):
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))


@pytest.mark.parametrize("damage", [_truncate, _randomize], ids=["truncated", "random-bytes"])
def test_bad_corrupt_part_under_resume(tiny, tmp_path, capsys, damage):
    out, part = as_part(tiny, tmp_path)
    damage(part)
    before = part.read_bytes()
    assert cli("run", tiny / "tiny.toml", "-o", out, "--resume", "--no-plot", "-q") == 2
    one_line_error(capsys, "--force")
    assert part.read_bytes() == before and not out.exists() and not lock_path(out).exists()


@pytest.mark.parametrize("damage", [_truncate, _randomize], ids=["truncated", "random-bytes"])
def test_bad_corrupt_trajectory_under_analyze(tiny, tmp_path, capsys, damage):
    f = copy_of(tiny, tmp_path)
    damage(f)
    assert cli("analyze", f, "-o", tmp_path / "an") == 2
    one_line_error(capsys)
    assert not (tmp_path / "an").exists()


def test_bad_missing_config_toml(tiny, tmp_path, capsys):
    f = copy_of(tiny, tmp_path)
    with h5py.File(f, "a") as h:
        del h.attrs["config_toml"]
    assert cli("analyze", f, "-o", tmp_path / "an") == 2
    one_line_error(capsys, "config_toml")
    with open_trajectory(f) as tr, pytest.raises(InputError, match="config_toml"):
        tr.run_config


# =====================================================================================================
# Silent wrong results (9)
# =====================================================================================================
def test_wrong_changed_float_in_part_refused_by_resume(tiny, tmp_path, capsys):
    out, part = as_part(tiny, tmp_path)
    change_one_float(part, "steps/step_1/reference/weight_l")
    assert cli("run", tiny / "tiny.toml", "-o", out, "--resume", "--no-plot", "-q") == 2
    one_line_error(capsys, "checksum", "weight_l", "--force")
    assert not out.exists()
    # --force starts over and reproduces the clean run
    assert cli("run", tiny / "tiny.toml", "-o", out, "--force", "--no-plot", "-q") == 0
    from test_runner import _assert_identical

    _assert_identical(out, tiny / "tiny.h5")


def test_wrong_changed_float_in_trajectory_refused_on_read(tiny, tmp_path, capsys):
    f = copy_of(tiny, tmp_path)
    change_one_float(f, "steps/step_0/directional/mb_ratio")
    assert cli("analyze", f, "-o", tmp_path / "an") == 2
    one_line_error(capsys, "checksum")
    with open_trajectory(f) as tr, pytest.raises(InputError, match="checksum"):
        tr.steps


def test_wrong_every_dataset_has_a_checksum(tiny):
    missing = []
    with h5py.File(tiny / "tiny.h5", "r") as f:
        f.visititems(lambda n, o: missing.append(n) if isinstance(o, h5py.Dataset) and "checksum" not in o.attrs
                     else None)
    assert missing == []


@pytest.mark.parametrize("override", ["rg.steps=2\n[evil]\nx=1", "rg.steps=2\nrun.seed=3", "rg.steps=2\r"])
def test_wrong_multi_line_override_refused(tiny, tmp_path, capsys, override):
    assert cli("run", tiny / "tiny.toml", "-o", tmp_path / "m.h5", "-s", override) == 2
    one_line_error(capsys, "single value")
    assert not list(tmp_path.iterdir())


def test_wrong_analyze_running_file_needs_partial(tiny, tmp_path, capsys):
    f = copy_of(tiny, tmp_path)
    with h5py.File(f, "a") as h:
        h.attrs["status"] = "running"
        del h["steps/step_1"]
    assert cli("analyze", f, "-o", tmp_path / "an") == 2
    one_line_error(capsys, "status = 'running'", "1 of 2 steps", "--partial")
    assert not (tmp_path / "an").exists()


def test_wrong_analyze_partial_flag_warns(tiny, tmp_path, capsys):
    f = copy_of(tiny, tmp_path)
    with h5py.File(f, "a") as h:
        h.attrs["status"] = "failed"
    assert cli("analyze", f, "-o", tmp_path / "an", "--partial") == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "status = 'failed'" in err
    assert (tmp_path / "an" / "mb_ratio.csv").is_file()


def test_wrong_analyze_one_step_file_refused_before_writing(tmp_path, capsys):
    (tmp_path / "one.toml").write_text(TINY.replace("steps = 2", "steps = 1"))
    assert cli("run", tmp_path / "one.toml", "-o", tmp_path / "one.h5", "--no-plot", "-q") == 0
    capsys.readouterr()  # the run's warnings (4 < rg.min_effective_samples samples)
    (tmp_path / "an").mkdir()
    assert cli("analyze", tmp_path / "one.h5", "-o", tmp_path / "an") == 2
    one_line_error(capsys, "2 steps")
    assert not list((tmp_path / "an").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["an", "one.h5", "one.toml"]


def test_wrong_analyze_reads_merged_sweep_summary(merged_sweep, tmp_path, capsys):
    path, spec, summary = merged_sweep
    assert cli("analyze", summary, "-o", tmp_path / "an") == 0
    import csv

    with open(tmp_path / "an" / "sweep_mb_tasks.csv") as fh:
        tasks = list(csv.DictReader(fh))
    with open(tmp_path / "an" / "sweep_mb.csv") as fh:
        points = list(csv.DictReader(fh))
    assert len(tasks) == len(spec.tasks) * 2  # 2 steps per task
    assert {r["model.coupling"] for r in points} == {"0", "0.05"}
    assert {r["replicates"] for r in points} == {"2"} and len(points) == 2 * 2
    with open_trajectory(spec.output_path(spec.tasks[0])) as tr:
        mine = [r for r in tasks if r["task_id"] == spec.tasks[0].task_id]
        assert [float(r["mb"]) for r in mine] == pytest.approx(list(tr.summary["mb_ratio"]), rel=1e-5)


def test_wrong_sweep_name_dotdot_refused(tmp_path, capsys):
    path = write_sweep(tmp_path, name="..")
    assert cli("sweep", path) == 2
    one_line_error(capsys, "sweep.name")


@pytest.mark.slow
def test_wrong_dask_lost_workers_fail_unfinished_tasks_keep_finished(tmp_path):
    pytest.importorskip("distributed")
    sched_file = tmp_path / "scheduler.json"
    procs = []
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                       "--port", "0", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                                       "--scheduler-file", str(sched_file)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        _wait_for(lambda: sched_file.exists() and sched_file.read_text().rstrip().endswith("}"), 120,
                  "the dask scheduler")
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                   str(sched_file), "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
                                   "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        procs.append(worker)
        address = json.loads(sched_file.read_text())["address"]
        base = LONG.replace("[run]\nseed = 7\n", "")
        path = write_sweep(tmp_path, name="lw", base=base, replicates=4, grid="",
                           body=f'[dask]\nscheduler = "{address}"\nlost_worker_timeout = 3\n')
        spec = load_spec(path)
        sweep = subprocess.Popen([sys.executable, "-m", "blocksim.cli", "sweep", str(path), "--executor", "dask",
                                  "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
        procs.append(sweep)
        first = spec.output_path(spec.tasks[0])
        try:
            _wait_for(lambda: first.exists() or sweep.poll() is not None, 240, "the first finished task")
        except AssertionError:
            sweep.kill()
            out, err = sweep.communicate(timeout=30)
            raise AssertionError(f"no task finished in 240 s; sweep output:\n{out}\n{err}") from None
        worker.kill()  # the only worker dies mid-sweep (walltime, preemption)
        worker.wait(timeout=30)
        out, err = sweep.communicate(timeout=240)
        assert sweep.returncode == 1, out + err
        assert "Traceback" not in err
        assert "no dask worker has been connected for 3 s" in out and "finished task files are kept" in out
        states = [task_state(spec, t).state for t in spec.tasks]
        assert states[0] == "done" and "done" != states[-1], states
        with open_trajectory(first) as tr:
            assert tr.status == "complete" and len(tr.steps) == 6
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)  # reaps it and closes its pipes


# =====================================================================================================
# Small things a user notices (3)
# =====================================================================================================
def test_small_no_matplotlib_plot_skipped_once_exit_0(tiny, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from blocksim.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(tiny / "tiny.toml"), "-o", str(tmp_path / "p.h5")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("plot skipped") == 1 and "matplotlib is not installed" in proc.stderr
    assert (tmp_path / "p.h5").is_file() and not (tmp_path / "p.png").exists()
    assert f"wrote {tmp_path / 'p.h5'}" in proc.stdout


def test_small_no_matplotlib_font_cache_noise(tiny, tmp_path):
    env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / "fresh-mpl"))
    proc = blocksim_proc("run", tiny / "tiny.toml", "-o", tmp_path / "f.h5", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f.png").is_file()
    assert "fontManager" not in proc.stderr and "font cache" not in proc.stderr
    assert all(line.startswith("blocksim: ") for line in proc.stderr.splitlines()), proc.stderr


def test_small_tests_write_no_readme_output_into_the_tree():
    source = (ROOT / "tests" / "test_readme.py").read_text()
    assert "cwd=tmp_path" in source and "cwd=ROOT" not in source
