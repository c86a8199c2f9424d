"""Integration tests of ``blocksim run``: the file contract, crash safety, resume, determinism, and
one-line errors for invalid configs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from blocksim import cli
from blocksim.io import FORMAT, FORMAT_VERSION, open_trajectory, part_path

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[model]
block = "generic"
n = 3
mb_bare = 1.4
cl_over_ct = 1.6
coupling = 0.02
[lattice]
n0 = 2
[rg]
steps = 2
pool_size = 4
pool_strategy = "partition"
n_keep = 3
[solver]
method = "perturbative"
[observables]
temperatures = [0.02, 0.1]
omega_points = 12
[run]
seed = 42
"""

# resample keeps every step equally long, so a kill after step 1 reliably lands mid-run
LONG = """
[model]
block = "generic"
n = 3
mb_bare = 1.4
cl_over_ct = 1.6
coupling = 0.02
[lattice]
n0 = 2
[rg]
steps = 6
pool_size = 96
pool_strategy = "resample"
samples = 1
n_keep = 3
diversity_warn = 0.0
[solver]
method = "perturbative"
batched = false  # the per-super-block path: slow enough to be killed between steps
[observables]
temperatures = [0.02, 0.1]
omega_points = 12
[run]
seed = 7
"""


def _env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    return env


def _cli(args, threads=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "blocksim.cli", "run", *map(str, args)], capture_output=True,
                          text=True, env=_env(threads), cwd=ROOT, timeout=timeout)


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_identical(a, b):
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = np.asarray(da[name]), np.asarray(db[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":
            assert x.tobytes() == y.tobytes(), f"{name} differs bitwise"
        else:
            assert np.array_equal(x, y), name
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa.attrs["config_toml"] == fb.attrs["config_toml"]


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    d = tmp_path_factory.mktemp("configs")
    (d / "tiny.toml").write_text(TINY)
    (d / "long.toml").write_text(LONG)
    return d


@pytest.fixture(scope="module")
def long_reference(configs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    res = _cli([configs / "long.toml", "-o", out, "--no-plot", "-q"], threads=1)
    assert res.returncode == 0, res.stderr
    return out


# --------------------------------------------------------------------------------------------
# End to end and the file contract
# --------------------------------------------------------------------------------------------
def test_cli_end_to_end_contract(configs, tmp_path):
    out = tmp_path / "tiny.h5"
    res = _cli([configs / "tiny.toml", "-o", out])
    assert res.returncode == 0, res.stderr
    assert "MB_num" in res.stdout and "c_l/c_t" in res.stdout
    assert len([ln for ln in res.stdout.splitlines() if ln.strip()[:1].isdigit()]) == 2  # one row per step
    assert "step_1 complete (2/2)" in res.stderr  # one log line per step when not a terminal
    assert out.exists() and out.with_suffix(".png").stat().st_size > 1000
    assert not part_path(out).exists()

    with h5py.File(out, "r") as f:
        for key in ("format", "format_version", "blocksim_version", "git_commit", "created", "config_toml",
                    "seed_entropy", "spawn_key", "status"):
            assert key in f.attrs, key
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["status"] == "complete"
        assert f.attrs["seed_entropy"] == 42
        assert "model" in f["parameters"] and f["parameters/rg"].attrs["steps"] == 2
        missing = []
        f.visititems(lambda n, o: missing.append(n) if isinstance(o, h5py.Dataset) and not (
            "units" in o.attrs and "description" in o.attrs and o.attrs["description"]) else None)
        assert missing == [], f"datasets without units/description: {missing}"
        for k in (0, 1):
            g = f[f"steps/step_{k}"]
            assert g.attrs["complete"]
            for name in ("scale_L", "coupling_g", "omega", "temperature", "im_chi_l", "im_chi_t", "re_chi_l",
                         "re_chi_t", "mb_ratio", "mb_ratio_err", "pool/energies", "pool/stress",
                         "superblocks/members", "superblocks/rotations", "diagnostics/weight_kept"):
                assert name in g, name
            n_t, n_w = g["temperature"].shape[0], g["omega"].shape[0]
            assert g["im_chi_l"].shape == (n_t, n_w) and g["re_chi_t"].shape == (n_t, n_w)
            p, m = g["superblocks/members"].shape
            assert m == 8 and g["superblocks/rotations"].shape == (p, 8, 3, 3)
            assert g["pool/stress"].shape[1] == 6
            assert np.all(g["im_chi_l"][()][:, :] <= 0) and np.all(g["im_chi_t"][()] <= 0)  # Im χ < 0, ω > 0
        assert np.array_equal(f["summary/step"][()], [0, 1])

    with open_trajectory(out) as tr:
        assert tr.status == "complete"
        assert [s.index for s in tr.steps] == [0, 1]
        assert tr.config["rg"]["steps"] == 2
        assert tr.steps[1].scale_L == 2.0 and tr.steps[1].coupling_g == pytest.approx(0.02 / 8)
        assert 1.0 < tr.steps[0].mb_ratio < 2.0


def test_existing_output_needs_force(configs, tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"precious")
    res = _cli([configs / "tiny.toml", "-o", out, "--no-plot"])
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "--force" in res.stderr
    assert out.read_bytes() == b"precious"
    res = _cli([configs / "tiny.toml", "-o", out, "--no-plot", "--force", "-q"])
    assert res.returncode == 0, res.stderr
    with open_trajectory(out) as tr:
        assert tr.status == "complete"


# --------------------------------------------------------------------------------------------
# Crash safety, resume, determinism
# --------------------------------------------------------------------------------------------
def _start_and_wait(args, marker: str, timeout: float = 240.0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "blocksim.cli", "run", *map(str, args)], cwd=ROOT, env=_env(1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    for line in proc.stderr:
        if marker in line:
            return proc
        if time.monotonic() - t0 > timeout:  # pragma: no cover
            break
    proc.kill()
    proc.wait()
    pytest.fail(f"never saw {marker!r}")


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(configs, long_reference, tmp_path):
    out = tmp_path / "killed.h5"
    proc = _start_and_wait([configs / "long.toml", "-o", out, "--no-plot"], "step_1 complete")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    part = part_path(out)
    assert not out.exists() and part.exists()
    with open_trajectory(part) as tr:
        assert tr.status == "running"
        done = [s.index for s in tr.steps]
        assert done[:2] == [0, 1] and len(done) < 6
        assert np.isfinite(tr.steps[1].mb_ratio)
    res = _cli([configs / "long.toml", "-o", out, "--resume", "--no-plot", "-q"], threads=1)
    assert res.returncode == 0, res.stderr
    assert not part.exists()
    _assert_identical(out, long_reference)


@pytest.mark.slow
def test_sigterm_marks_failed_then_resume(configs, long_reference, tmp_path):
    out = tmp_path / "term.h5"
    proc = _start_and_wait([configs / "long.toml", "-o", out, "--no-plot"], "step_0 complete")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM" in err and "--resume" in err
    with open_trajectory(part_path(out)) as tr:
        assert tr.status == "failed"
        assert "SIGTERM" in tr.attrs["failure_reason"]
        assert len(tr.steps) >= 1
    res = _cli([configs / "long.toml", "-o", out, "--resume", "--no-plot", "-q"], threads=2)
    assert res.returncode == 0, res.stderr
    _assert_identical(out, long_reference)


@pytest.mark.slow
def test_thread_count_independence(configs, long_reference, tmp_path):
    out = tmp_path / "t2.h5"
    res = _cli([configs / "long.toml", "-o", out, "--no-plot", "-q"], threads=2)
    assert res.returncode == 0, res.stderr
    _assert_identical(out, long_reference)


def test_resume_refuses_changed_config(configs, tmp_path):
    out = tmp_path / "r.h5"
    part = part_path(out)
    proc = _start_and_wait([configs / "long.toml", "-o", out, "--no-plot"], "step_0 complete")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert part.exists()
    res = _cli([configs / "long.toml", "-o", out, "--resume", "-s", "model.coupling=0.03", "--no-plot"])
    assert res.returncode == 2
    assert "model.coupling" in res.stderr and "--force" in res.stderr


# --------------------------------------------------------------------------------------------
# Invalid configs: one line on stderr, exit code 2, no file
# --------------------------------------------------------------------------------------------
INVALID = [
    pytest.param("[modle]\nn = 3\n", [], "did you mean 'model'", id="unknown-section"),
    pytest.param("[model]\ncouplin = 0.1\n", [], "did you mean 'coupling'", id="unknown-key"),
    pytest.param("[model]\ncoupling = -0.1\n", [], "model.coupling = -0.1: must be", id="negative-coupling"),
    pytest.param("[model]\ncoupling = \"big\"\n", [], "must be a number", id="coupling-type"),
    pytest.param("[model]\nblock = \"tls\"\n", [], "did you mean 'ttls'", id="block-kind"),
    pytest.param("[model]\nn = 1\n", [], "model.n = 1: must be", id="n-too-small"),
    pytest.param("[model]\nn = 2.5\n", [], "must be an integer", id="n-float"),
    pytest.param("[model]\nmb_bare = 1.0\n", [], "sqrt(4/3)", id="mb-bare-below-bound"),
    pytest.param("[model]\ncl_over_ct = 1.1\n", [], "positive bulk modulus", id="cl-ct"),
    pytest.param("[model]\nform = \"zhou\"\n", [], "model.form", id="form"),
    pytest.param("[lattice]\nn0 = 1\n", [], "lattice.n0 = 1", id="n0"),
    pytest.param("[lattice]\nshape = \"sphere\"\n", [], "lattice.shape", id="shape"),
    pytest.param("[rg]\nsteps = 0\n", [], "rg.steps = 0", id="steps-zero"),
    pytest.param("[rg]\nsteps = 3\nr_over_l1 = 100.0\n", [], "rg.r_over_l1", id="steps-and-r"),
    pytest.param("[rg]\npool_strategy = \"random\"\n", [], "rg.pool_strategy", id="strategy"),
    pytest.param("[rg]\nn_keep = 1\n", [], "rg.n_keep = 1", id="n-keep-small"),
    pytest.param("[rg]\nn_keep = 50\n", [], "rg.n_keep = 50", id="n-keep-large"),
    pytest.param("[rg]\npool_size = 100000\n", [], "max_initial_pool", id="partition-too-big"),
    pytest.param("[rg]\npool_strategy = \"resample\"\npool_size = 4\n", [], "rg.pool_size = 4", id="resample-small"),
    pytest.param("[solver]\nmethod = \"lanczos\"\n", [], "solver.method", id="method"),
    pytest.param("[solver]\nresonance_threshold = 1.5\n", [], "solver.resonance_threshold", id="threshold"),
    pytest.param("[solver]\ninclude_doubles = \"yes\"\n", [], "true or false", id="doubles-type"),
    pytest.param("[model]\nn = 4\n[solver]\nmethod = \"exact\"\n", [], "must be ≤ 20000", id="exact-too-big"),
    pytest.param("[model]\nn = 2\n[rg]\nn_keep = 5\n[solver]\nmethod = \"exact\"\n", [],
                 "step 1 (N0³ = 8 members with 5 levels) has a Hilbert space of n^(N0³) = 390625", id="exact-too-big-at-step-1"),
    pytest.param("[model]\nn = 2\n[rg]\nn_keep = 10\n", [], "rg.n_keep = 10: must be ≤ 9", id="n-keep-above-singles"),
    pytest.param("[solver]\ninclude_doubles = true\n", [], "solver.include_doubles = true: only", id="doubles-perturbative"),
    pytest.param("[model]\nn = 3\n[rg]\nn_keep = 60\n[solver]\nmethod = \"sector\"\ninclude_doubles = true\n", [],
                 "step 1 (N0³ = 8 members with 60 levels) has a sector of 97941 states", id="sector-too-big-at-step-1"),
    pytest.param("[observables]\nomega_min = 1e-300\nomega_max = 1e300\n", [], "observables.omega_min = 1e-300",
                 id="omega-min-tiny"),
    pytest.param("[observables]\nomega_min = 1e-40\nomega_max = 1e-5\n", [], "at most 30 decades",
                 id="omega-too-many-decades"),
    pytest.param("[observables]\ntemperatures = []\n", [], "non-empty", id="no-temperatures"),
    pytest.param("[observables]\ntemperatures = [0.1, 0.05]\n", [], "increasing", id="temperatures-order"),
    pytest.param("[observables]\nomega_min = \"low\"\n", [], "\"auto\"", id="omega-min-type"),
    pytest.param("[observables]\nomega_min = 2.0\nomega_max = 1.0\n", [], "observables.omega_max", id="omega-range"),
    pytest.param("[observables]\nreference_temperature = 0.3\n", [], "must be one of", id="ref-temperature"),
    pytest.param("[observables]\nreference_band = [0.5, 0.2]\n", [], "reference_band", id="band"),
    pytest.param("[observables]\ndirections = [\"10\"]\n", [], "Miller", id="direction-syntax"),
    pytest.param("[observables]\ndirections = [\"110:100\"]\n", [], "perpendicular", id="direction-perp"),
    pytest.param("[observables]\nline = \"voigt\"\n", [], "observables.line", id="line"),
    pytest.param("[observables]\ntemperatures = [-0.1, 0.2]\n", [], "observables.temperatures", id="negative-temperature"),
    pytest.param("[observables]\nomega_points = 0\n", [], "observables.omega_points = 0", id="empty-omega-grid"),
    pytest.param("[model]\ncoupling = nan\n", [], "model.coupling = nan", id="coupling-nan"),
    pytest.param("[model]\ncl_over_ct = inf\n", [], "model.cl_over_ct = inf", id="cl-ct-inf"),
    pytest.param("[run]\nseed = -1\n", [], "run.seed = -1", id="seed"),
    pytest.param("[run]\nnumba_threads = -2\n", [], "run.numba_threads", id="threads"),
    pytest.param("[model\nn = 3\n", [], "invalid TOML", id="toml-syntax"),
    pytest.param("model = 3\n", [], "must be a TOML table", id="section-not-table"),
    pytest.param("", ["rg.steps"], "section.field=value", id="override-no-equals"),
    pytest.param("", ["rg.steps=two"], "rg.steps = 'two'", id="override-type"),
    pytest.param("", ["rgg.steps=2"], "did you mean 'rg'", id="override-section"),
]


@pytest.mark.parametrize("text, overrides, fragment", INVALID)
def test_invalid_config_one_line_exit_2_no_file(text, overrides, fragment, tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out" / "bad.h5"
    args = ["run", str(cfg), "-o", str(out)]
    for o in overrides:
        args += ["-s", o]
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("blocksim: error: ")
    assert fragment in lines[0]
    assert not out.exists() and not part_path(out).exists()
    assert not (tmp_path / "out").exists()


def test_non_finite_observable_stops_the_run_naming_it(configs, tmp_path, capsys):
    """A grid above every line leaves the reference band empty: MB would be NaN. Exit 2, one line, no .h5."""
    out = tmp_path / "nan.h5"
    rc = cli.main(["run", str(configs / "tiny.toml"), "-o", str(out), "--no-plot", "-q",
                   "-s", "observables.omega_min=1e3", "-s", "observables.omega_max=1e4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "step 0: mb_ratio" in err[0] and "non-finite" in err[0]
    assert not out.exists()
    with open_trajectory(part_path(out)) as tr:  # the partial file says why, and keeps no step
        assert tr.status == "failed" and len(tr.steps) == 0


def test_invalid_config_real_process(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[rg]\nstpes = 3\n")
    res = _cli([cfg, "-o", tmp_path / "o.h5"])
    assert res.returncode == 2
    assert res.stderr.strip() == "blocksim: error: rg.stpes: unknown key in [rg] (did you mean 'steps'?)"
    assert list(tmp_path.iterdir()) == [cfg]


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    out = tmp_path / "quickstart.h5"
    t0 = time.monotonic()
    res = _cli([ROOT / "runs" / "quickstart.toml", "-o", out, "--force"])
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert out.with_suffix(".png").exists()
    print(f"quickstart: {elapsed:.1f} s")


def test_window_truncation_keeps_levels_near_the_probe(configs, tmp_path):
    from blocksim import spectra

    out = tmp_path / "window.h5"
    res = _cli([configs / "tiny.toml", "-o", out, "-s", 'rg.truncation="window"', "-s", "rg.window_center=0.4"])
    assert res.returncode == 0, res.stderr
    with open_trajectory(out) as traj:
        assert traj.config["rg"]["truncation"] == "window"
        step0, step1 = traj.steps[0], traj.steps[1]
        for j in range(2):
            members = step0.members[j]
            sb = spectra.assemble_superblock(step0.pool_energies[members], step0.pool_stress[members],
                                             step0.rotations[j], 2, step0.coupling_g, 1.6)
            with warnings.catch_warnings():  # the step-1 pool is soft: many resonant clusters
                warnings.simplefilter("ignore", spectra.ResonanceWarning)
                spec = spectra.solve(sb, "perturbative")
            e, _, _ = spec.truncate(3, 0.4)
            np.testing.assert_allclose(step1.pool_energies[j], e, rtol=1e-12)
            nearest = np.sort(np.abs(spec.energies[1:] - 0.4))[:2]
            np.testing.assert_allclose(np.sort(np.abs(e[1:] - 0.4)), nearest, rtol=1e-12)
    bad = _cli([configs / "tiny.toml", "-o", tmp_path / "bad.h5", "-s", "rg.window_center=-1.0"])
    assert bad.returncode == 2 and "rg.window_center = -1" in bad.stderr
    assert not (tmp_path / "bad.h5").exists()
