"""Tests of the analysis package (blocksim.analysis) and the thin scripts, on synthetic trajectories."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blocksim.analysis import cli as analysis_cli
from blocksim.analysis import experiment_route, flow, materials_plot, mb_ratio, spectra_plot
from blocksim.analysis.loading import load_trajectories, load_trajectory
from blocksim.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import write_synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _png_ok(path):
    from matplotlib import image

    assert os.path.getsize(path) > 0
    img = image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.ptp(img[..., :3]) > 0  # not a blank canvas


@pytest.fixture
def replicates(tmp_path):
    paths = [write_synthetic(tmp_path / f"rep{s}.h5", seed=s, noise=0.02, mb_err=0.02, n_steps=5) for s in range(4)]
    return paths


def test_load_synthetic_and_incomplete_step(tmp_path):
    p = write_synthetic(tmp_path / "a.h5", n_steps=4, incomplete_last=True, status="running")
    traj = load_trajectory(p)
    assert len(traj.steps) == 3
    assert traj.config["model"]["cl_over_ct"] == 1.6
    assert traj.steps[1].im_chi_l.shape == (6, 12)


def test_synthetic_opens_with_io_reader(tmp_path):
    io = pytest.importorskip("blocksim.io")
    p = write_synthetic(tmp_path / "a.h5", n_steps=3)
    with io.open_trajectory(p) as t:
        assert t.status == "complete"
        assert len(t.steps) == 3
        assert t.config["model"]["cl_over_ct"] == 1.6
        np.testing.assert_allclose(t.summary["scale_L"], [1, 2, 4])


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such"):
        load_trajectory(tmp_path / "missing.h5")
    txt = tmp_path / "x.h5"
    txt.write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5"):
        load_trajectory(txt)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(InputError, match="format"):
        load_trajectory(tmp_path / "other.h5")
    with pytest.raises(InputError):
        load_trajectories([])


def test_mb_ratio_known_answer(tmp_path):
    p = write_synthetic(tmp_path / "a.h5", a_l=1.0, b_l=0.5, a_t=0.4, b_t=0.2, mb_err=0.03)
    rep = mb_ratio.run([p], tmp_path / "out")
    # ratio l/t = 2.5 at every step → MB = sqrt(2.5)
    np.testing.assert_allclose([r["mb"] for r in rep.rows], math.sqrt(2.5), rtol=1e-12)
    np.testing.assert_allclose([r["err_pool"] for r in rep.rows], 0.03, rtol=1e-12)
    assert all(math.isnan(r["err_seed"]) for r in rep.rows)
    final = rep.extra["final"][0]
    assert final["mb_minus_clct"] == pytest.approx(math.sqrt(2.5) - 1.6)
    _png_ok(rep.png_path)
    assert Path(rep.csv_path).read_text().startswith("group,")


def test_mb_ratio_groups_by_cl_over_ct(tmp_path):
    a = write_synthetic(tmp_path / "a.h5", cl_over_ct=1.5, seed=1)
    b = write_synthetic(tmp_path / "b.h5", cl_over_ct=1.5, seed=2)
    c = write_synthetic(tmp_path / "c.h5", cl_over_ct=1.9, seed=3)
    rep = mb_ratio.run([a, b, c], tmp_path / "out")
    finals = rep.extra["final"]
    assert [f["replicates"] for f in finals] == [2, 1]
    assert [f["cl_over_ct"] for f in finals] == [1.5, 1.9]


def test_error_bars_shrink_like_inverse_sqrt_replicates():
    rng = np.random.default_rng(7)
    ns = np.array([2, 4, 8, 16, 32, 64])
    seed_err, pool_err = [], []
    for n in ns:
        trials = [mb_ratio.combine_replicates(1.6 + 0.05 * rng.standard_normal((n, 3)), np.full((n, 3), 0.05))
                  for _ in range(400)]
        # RMS over trials: s²/n is unbiased (the mean of s is biased low by c4(n) at small n)
        seed_err.append(np.sqrt(np.mean([np.mean(t[2] ** 2) for t in trials])))
        pool_err.append(np.mean([t[1].mean() for t in trials]))
    slope_seed = np.polyfit(np.log(ns), np.log(seed_err), 1)[0]
    slope_pool = np.polyfit(np.log(ns), np.log(pool_err), 1)[0]
    assert slope_pool == pytest.approx(-0.5, abs=1e-10)
    assert slope_seed == pytest.approx(-0.5, abs=0.03)


def test_error_bars_shrink_end_to_end(tmp_path):
    paths = [write_synthetic(tmp_path / f"r{s}.h5", seed=s, mb_noise=0.05, n_steps=2) for s in range(32)]
    errs = []
    ns = [4, 8, 16, 32]
    for n in ns:
        rows = mb_ratio.mb_rows(load_trajectories(paths[:n]))
        errs.append(np.mean([r["err_pool"] for r in rows]))
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert slope == pytest.approx(-0.5, abs=1e-10)


def test_flow_recovers_known_slope(tmp_path):
    paths = [write_synthetic(tmp_path / f"f{s}.h5", seed=10 + s, n_steps=7, a_l=1.0, b_l=0.37, a_t=0.5, b_t=0.11,
                             noise=0.03) for s in range(5)]
    rep = flow.run(paths, tmp_path / "out")
    fit = rep.extra["fits"][0]
    assert abs(fit["b_l"] - 0.37) < 3 * fit["err_b_l"]
    assert abs(fit["b_t"] - 0.11) < 3 * fit["err_b_t"]
    assert fit["err_b_l"] < 0.05  # the error is informative, not huge
    assert fit["mb_asymptotic"] == pytest.approx(math.sqrt(0.37 / 0.11), rel=0.2)
    _png_ok(rep.png_path)


def test_fit_log_flow_exact_line_and_error_scaling():
    x = np.arange(6.0)
    fit = flow.fit_log_flow(x, 2.0 + 0.5 * x, sigma=np.full(6, 0.1))
    assert fit["a"] == pytest.approx(2.0) and fit["b"] == pytest.approx(0.5)
    assert fit["chi2_dof"] == pytest.approx(0.0, abs=1e-20)
    fit2 = flow.fit_log_flow(x, 2.0 + 0.5 * x, sigma=np.full(6, 0.2))
    assert fit2["err_b"] == pytest.approx(2 * fit["err_b"])
    with pytest.raises(InputError):
        flow.fit_log_flow([0.0], [1.0])


def test_spectra_selection_and_unknown_step(tmp_path):
    p = write_synthetic(tmp_path / "a.h5", n_steps=3)
    rep = spectra_plot.run([p], tmp_path / "out", steps=[0, 2], temperatures=[0.02])
    assert {r["step"] for r in rep.rows} == {0, 2}
    assert {r["temperature"] for r in rep.rows} == {0.02}
    assert len(rep.rows) == 2 * 12
    _png_ok(rep.png_path)
    with pytest.raises(InputError, match="step = 9"):
        spectra_plot.run([p], tmp_path / "out", steps=[9])
    with pytest.raises(InputError, match="temperature"):
        spectra_plot.run([p], tmp_path / "out", temperatures=[7.0])


def test_experiment_route_known_slopes(tmp_path):
    p = write_synthetic(tmp_path / "a.h5", cl_over_ct=1.7, re_slope_l=0.45, re_slope_t=0.2)
    rep = experiment_route.run([p], tmp_path / "out")
    row = rep.rows[0]
    # Δc/c = Re χ/(2ρc²): C_l = A_l/(2 (c_l/c_t)²), C_t = A_t/2; γ_l/γ_t = sqrt(A_l/A_t)
    assert row["C_l"] == pytest.approx(0.45 / (2 * 1.7**2), rel=1e-10)
    assert row["C_t"] == pytest.approx(0.1, rel=1e-10)
    assert row["gamma_ratio_route"] == pytest.approx(math.sqrt(0.45 / 0.2), rel=1e-10)
    assert row["mb_num"] > 0
    _png_ok(rep.png_path)


def test_velocity_shift_sign():
    # softening (Re χ < 0) lowers c
    assert experiment_route.velocity_shift(-0.2, 1.0) == pytest.approx(-0.1)


def test_materials_fits_reproduce_paper(tmp_path):
    rep = materials_plot.run([], tmp_path / "out")
    fits = {f["fit"]: f for f in rep.extra["fits"]}
    # printed to 3 decimals in Sec. IV; blocksim.model.materials documents that r(13) = 0.2604 is 0.0006 below 0.261
    assert fits["all"]["slope"] == pytest.approx(1.102, abs=1e-3)
    assert fits["all"]["r"] == pytest.approx(0.261, abs=1e-3)
    assert round(fits["subset"]["slope"], 3) == 1.061
    assert round(fits["subset"]["r"], 3) == 0.745
    _png_ok(rep.png_path)


def test_materials_matches_simulated_ratio(tmp_path):
    p = write_synthetic(tmp_path / "sio2.h5", cl_over_ct=5.80 / 3.80)
    rep = materials_plot.run([p], tmp_path / "out")
    matched = [r for r in rep.rows if not math.isnan(r["mb_sim"])]
    assert [r["material"] for r in matched] == ["a-SiO2"]
    assert matched[0]["mb_sim"] == pytest.approx(math.sqrt(2.5))


def test_analyze_cli_runs_all(tmp_path, replicates, capsys):
    from blocksim.cli import main

    out = tmp_path / "out"
    assert main(["analyze", *map(str, replicates), "-o", str(out)]) == 0
    for name in ("mb_ratio", "flow", "spectra", "experiment_route"):
        assert (out / f"{name}.csv").is_file()
        _png_ok(out / f"{name}.png")
    assert not (out / "materials.png").exists()  # c_l/c_t = 1.6 matches no material within 0.01
    assert "MB_num per step" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "nope.h5")]) == 2


def test_analyze_includes_materials_when_applicable(tmp_path):
    p = write_synthetic(tmp_path / "lat.h5", cl_over_ct=4.78 / 2.80)
    reports = analysis_cli.analyze([p], tmp_path / "out", verbose=False)
    assert [r.name for r in reports][-1] == "materials"


@pytest.mark.parametrize("script", ["mb_ratio", "flow", "spectra", "experiment_route", "materials"])
def test_thin_scripts(tmp_path, script):
    p = write_synthetic(tmp_path / "a.h5", n_steps=3)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(ROOT / "analysis" / f"{script}.py"), str(p), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout
    pngs = list(out.glob("*.png"))
    assert pngs and all(x.stat().st_size > 0 for x in pngs)


def test_thin_script_bad_file_exit_code(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "analysis" / "flow.py"), str(tmp_path / "none.h5")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no such trajectory file" in res.stderr


# ------------------------------------------------------------------------------ recursion_check
def test_recursion_check_fit_models_known_answers():
    from blocksim.analysis import recursion_check as rcheck

    n0 = np.array([2, 3, 4, 6, 8, 12, 16])
    err = np.full(n0.size, 0.01)
    fit = rcheck.fit_models(n0, 0.3 + 0.8 * np.log(n0), err)
    assert fit["log_b"] == pytest.approx(0.8, rel=1e-10)
    assert fit["log_chi2dof"] == pytest.approx(0.0, abs=1e-12)
    assert fit["const_chi2dof"] > 100
    assert fit["best"] == "log"
    assert rcheck.verdict(fit, 0.8).startswith("ln N0 growth, slope agrees")
    flat = rcheck.fit_models(n0, np.full(n0.size, 0.5), err)
    assert "no ln N0 growth" in rcheck.verdict(flat, 2.0)
    power = rcheck.fit_models(n0, 2.0 * n0**-1.0, err)
    assert power["pow_p"] == pytest.approx(-1.0, rel=1e-6)
    sat = rcheck.fit_models(n0, 1.5 - 2.0 / n0, err)
    assert sat["sat_a"] == pytest.approx(1.5, rel=1e-10) and sat["sat_c"] == pytest.approx(2.0, rel=1e-10)
    assert sat["best"] == "sat"


def _records(shape, n0, couplings, thresholds, samples, seed=3):
    from blocksim.analysis import recursion_check as rcheck

    return [rcheck.sample_record(np.random.default_rng([seed, k]), shape, n0, couplings, thresholds)
            for k in range(samples)]


def test_recursion_check_parts_add_up_and_extrapolations():
    from blocksim.analysis import recursion_check as rcheck

    recs = _records("cube", 3, (1e-3, 3e-3), (0.05, 0.1, 0.2), 4)
    rows = rcheck.reduce_samples(recs, "cube", 3, (1e-3, 3e-3), (0.05, 0.1, 0.2))
    assert len(rows) == (2 * 3 + 2 + 1) * len(rcheck.KEYS)
    for r in rows:
        assert r["r_resonant"] + r["r_nonresonant"] == pytest.approx(r["r_per_g"], rel=1e-12, abs=1e-12)
        assert r["r_res_cluster"] + r["r_res_dressed"] == pytest.approx(r["r_resonant"], rel=1e-12, abs=1e-12)
        assert np.isfinite(r["r_res_cluster_sd"])
        assert r["err"] > 0 and r["b_pred"] > 0  # Re χ̃ < 0 in the band → Eq. 3.7 predicts more absorption
    # θ → 0 is the per-sample linear extrapolation: a linear functional of the rows at fixed g
    th = np.array([0.05, 0.1, 0.2])
    w = np.linalg.pinv(np.stack([np.ones(3), th], axis=1))[0]
    sel = [r for r in rows if r["coupling_g"] == 1e-3 and r["direction"] == "powder" and r["pol"] == "l"]
    by_th = {r["threshold"]: r for r in sel}
    assert by_th[0.0]["r_per_g"] == pytest.approx(sum(wi * by_th[t]["r_per_g"] for wi, t in zip(w, th)), rel=1e-9)
    # the same blocks and rotations at every (g, θ): the members' baseline is identical
    assert all(np.array_equal(recs[0]["base"], rcheck.sample_record(np.random.default_rng([3, 0]), "cube", 3, (1e-3,),
                                                                    (0.3,))["base"]) for _ in range(1))


def test_recursion_check_tiny_coupling_is_null():
    from blocksim.analysis import recursion_check as rcheck

    recs = _records("sphere", 3, (1e-12,), (0.1,), 3)
    for r in rcheck.reduce_samples(recs, "sphere", 3, (1e-12,), (0.1,)):
        assert abs(r["r_per_g"] * 1e-12) < 1e-9


def test_recursion_plan_tasks_merge_and_plot(tmp_path):
    from blocksim.analysis import recursion_plan as plan_mod

    plan_file = tmp_path / "plan.toml"
    plan_file.write_text("""
[scan]
n0 = [2, 3, 4]
shapes = ["cube", "sphere"]
couplings = [1e-3, 3e-3]
thresholds = [0.1, 0.2]
samples = 3
samples_per_task = {2 = 3, default = 2}
moment_samples = 500
output_dir = "out"
""")
    plan = plan_mod.load_plan(str(plan_file))
    todo = plan_mod.tasks(plan)
    assert len(todo) == 2 + 2 * 2 + 2 * 2
    plan_mod.run_local(plan, 1, log=lambda *_: None)
    rep = plan_mod.merge(plan)
    assert {r["shape"] for r in rep.rows} == {"cube", "sphere"}
    assert {r["n0"] for r in rep.rows} == {2, 3, 4}
    assert all(np.isfinite(r["r_semianalytic"]) for r in rep.rows)
    assert any(f["part"] == "r_nonresonant" for f in rep.extra["fits"])
    _png_ok(rep.png_path)
    # task results do not depend on how samples are grouped: rerun task 2 alone, same file content
    path = plan_mod.run_task(plan, 2)
    with np.load(path) as z:
        first = z["base"].copy()
    regrouped = plan_mod.load_plan(str(plan_file), {"samples_per_task": 1})
    assert plan_mod.tasks(plan)[2] == ("cube", 3, 0, 2, 0, 2)
    index = plan_mod.tasks(regrouped).index(("cube", 3, 0, 1, 0, 2))
    with np.load(plan_mod.run_task(regrouped, index)) as z:  # cube N0 = 3, sample 0 alone
        np.testing.assert_array_equal(z["base"][0], first[0])


def test_recursion_plan_run_order_is_round_robin(tmp_path):
    """Every (shape, N0) gets its first task before any gets its second; a sample's coupling parts stay together."""
    from blocksim.analysis import recursion_plan as plan_mod

    plan_file = tmp_path / "plan.toml"
    plan_file.write_text("""
[scan]
n0 = [2, 3, 8]
shapes = ["cube", "sphere"]
couplings = [1e-3, 3e-3]
thresholds = [0.1]
samples = {2 = 2, 3 = 4, 8 = 3}
samples_per_task = {2 = 2, default = 1}
couplings_per_task = {8 = 1}
output_dir = "out"
""")
    plan = plan_mod.load_plan(str(plan_file))
    todo = plan_mod.tasks(plan)
    order = plan_mod.run_order(plan)
    assert sorted(order) == list(range(len(todo)))
    groups = {(t[0], t[1]) for t in todo}
    first_round = [todo[i] for i in order[:len(groups) + 2]]  # N0 = 8 has two coupling parts per sample
    assert {(t[0], t[1]) for t in first_round} == groups
    assert order != list(range(len(todo)))  # the plain list runs all N0 = 3 before any N0 = 8
    seen = [(todo[i][0], todo[i][1], todo[i][2]) for i in order]
    for key in set(seen):  # the coupling parts of one sample are consecutive
        at = [j for j, k in enumerate(seen) if k == key]
        assert at == list(range(at[0], at[0] + len(at)))


def test_recursion_plan_split_by_coupling_gives_the_same_table(tmp_path):
    from blocksim.analysis import recursion_check as rcheck
    from blocksim.analysis import recursion_plan as plan_mod

    text = """
[scan]
n0 = [2, 3]
shapes = ["cube"]
couplings = [1e-3, 3e-3]
thresholds = [0.1, 0.2]
samples = 3
samples_per_task = 2
output_dir = "{out}"
"""
    whole = tmp_path / "whole.toml"
    whole.write_text(text.format(out="whole"))
    split = tmp_path / "split.toml"
    split.write_text(text.format(out="split") + "couplings_per_task = {3 = 1}\n")
    plans = [plan_mod.load_plan(str(p)) for p in (whole, split)]
    assert len(plan_mod.tasks(plans[1])) == len(plan_mod.tasks(plans[0])) + 2
    tables = []
    for plan in plans:
        plan_mod.run_local(plan, 1, log=lambda *_: None)
        by_key, missing = plan_mod._load_records(plan)
        assert not missing
        tables.append(rcheck.reduce_samples(by_key[("cube", 3)], "cube", 3, plan.couplings, plan.thresholds))
    assert [r["r_per_g"] for r in tables[0]] == [r["r_per_g"] for r in tables[1]]


def test_recursion_plan_rejects_bad_keys(tmp_path):
    from blocksim.analysis import recursion_plan as plan_mod

    bad = tmp_path / "bad.toml"
    bad.write_text("[scan]\nn0 = [2]\ncouplings = [1e-3]\nthresholds = [0.1]\ncoupling = 1\n")
    with pytest.raises(InputError, match="scan.coupling"):
        plan_mod.load_plan(str(bad))
    bad.write_text("[scan]\nn0 = [2]\ncouplings = [1e-3]\nthresholds = [1.5]\n")
    with pytest.raises(InputError, match="thresholds"):
        plan_mod.load_plan(str(bad))


REAL_CONFIG = """
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
pool_size = 8
pool_strategy = "partition"
n_keep = 3
[solver]
method = "perturbative"
[observables]
temperatures = [0.02, 0.05, 0.1]
omega_points = 16
[run]
seed = 7
"""


@pytest.fixture(scope="module")
def real_trajectory(tmp_path_factory):
    import blocksim

    d = tmp_path_factory.mktemp("real")
    (d / "real.toml").write_text(REAL_CONFIG)
    return Path(blocksim.run(str(d / "real.toml"), str(d / "real.h5"), progress="none"))


def test_reductions_on_a_real_trajectory(real_trajectory, tmp_path):
    from blocksim.io import open_trajectory

    with open_trajectory(real_trajectory) as traj:
        stored = [s.mb_ratio for s in traj.steps]
    proc = subprocess.run(
        [sys.executable, "-m", "blocksim.cli", "analyze", str(real_trajectory), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("mb_ratio", "flow", "spectra", "experiment_route"):
        _png_ok(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.csv").stat().st_size > 0
    import csv

    with open(tmp_path / "mb_ratio.csv") as fh:
        table = list(csv.DictReader(fh))
    # the CSV carries 6 significant digits
    assert [float(r["mb"]) for r in table] == pytest.approx(stored, rel=1e-5)
    route = experiment_route.route_rows(load_trajectories([real_trajectory]))
    assert all(math.isfinite(r["mb_num"]) and math.isfinite(r["gamma_ratio_route"]) for r in route)


@pytest.mark.parametrize("name", ["recursion_check", "recursion_check_reduced", "recursion_check_lowT"])
def test_shipped_recursion_plans_load(name):
    from blocksim.analysis import recursion_plan as plan_mod

    plan = plan_mod.load_plan(str(ROOT / "runs" / "scans" / f"{name}.toml"))
    assert len(plan.couplings) >= 3 and max(plan.couplings) / min(plan.couplings) >= 10
    assert len(plan.thresholds) >= 3 and "cube" in plan.shapes
    assert plan.output_dir.endswith(os.path.join("runs", "out", name))
    if name == "recursion_check":
        assert plan.n0 == (2, 3, 4, 6, 8, 12, 16, 24, 32)
    assert len(plan_mod.tasks(plan)) > 0


def test_analyze_skips_the_experiment_route_for_one_temperature(tmp_path, capsys):
    """A run with one temperature (as the flow studies use) is analyzed; only the ln T fit is skipped."""
    import blocksim

    cfg = ('[model]\nblock = "generic"\nn = 3\ncoupling = 0.01\n[lattice]\nn0 = 2\n'
           '[rg]\nsteps = 2\npool_size = 4\n[observables]\ntemperatures = [0.05]\nomega_points = 16\n'
           '[run]\nseed = 5\n')
    (tmp_path / "one_t.toml").write_text(cfg)
    path = blocksim.run(str(tmp_path / "one_t.toml"), tmp_path / "one_t.h5")
    reports = analysis_cli.analyze([path], tmp_path / "out", verbose=True)
    names = [r.name for r in reports]
    assert "experiment_route" not in names and {"mb_ratio", "flow", "convergence"} <= set(names)
    assert "experiment_route: skipped 1 file(s)" in capsys.readouterr().out
    assert not (tmp_path / "out" / "experiment_route.csv").exists()


def test_analyze_leaves_out_a_sweep_manifest(tmp_path, replicates, capsys):
    """`blocksim analyze OUT/*.h5` on a sweep's output folder names its manifest.h5 too: it is left out with a
    note; a manifest alone is a one-line error (exit 2)."""
    import inspect

    import h5py

    from blocksim.analysis.loading import MANIFEST_FORMAT
    from blocksim.cli import main
    from blocksim.sweep import manifest

    assert f'"{MANIFEST_FORMAT}"' in inspect.getsource(manifest)  # the format the sweep writes
    man = tmp_path / "manifest.h5"
    with h5py.File(man, "w") as f:
        f.attrs["format"] = MANIFEST_FORMAT
    assert main(["analyze", *map(str, replicates), str(man), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "left out 1 sweep manifest(s)" in out and (tmp_path / "out" / "flow.csv").is_file()
    assert main(["analyze", str(man), "-o", str(tmp_path / "out2")]) == 2
    assert "only sweep manifests" in capsys.readouterr().err
