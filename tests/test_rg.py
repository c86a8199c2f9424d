"""Tests of blocksim.rg: streams, pool strategies, reductions, the g = 0 null test and an independent
recomputation of a super block by dense exact diagonalization."""

from __future__ import annotations

import numpy as np
import pytest

from blocksim import rg
from blocksim.config import load_config
from blocksim.coupling import lattice_positions, stress_coupling_mandel
from blocksim.io import open_trajectory
from blocksim.response import chi_components, transitions_from_levels
from blocksim.tensors import isotropic_projection, rotation_mandel


def _cfg(**dotted):
    base = {"run.seed": 5, "rg.steps": 2, "rg.pool_size": 3, "run.progress": "none"}
    base.update(dotted)
    return load_config({}, base)


# --------------------------------------------------------------------------------------------
# Streams and pools
# --------------------------------------------------------------------------------------------
def test_partition_members_use_every_block_once():
    cfg = _cfg()
    members = rg.step_members(cfg, 0, 3 * 64)
    assert members.shape == (24, 8)
    assert np.array_equal(np.sort(members.ravel()), np.arange(192))


def test_resample_members_shape_and_range():
    cfg = _cfg(**{"rg.pool_strategy": "resample", "rg.pool_size": 20})
    members = rg.step_members(cfg, 4, 20)
    assert members.shape == (20, 8)
    assert members.min() >= 0 and members.max() < 20


def test_streams_depend_on_identity_not_call_order():
    cfg = _cfg()
    r_direct = rg.step_rotations(cfg, 1, 3)
    for j in range(5):
        rg.step_rotations(cfg, 0, j)
    assert np.array_equal(rg.step_rotations(cfg, 1, 3), r_direct)
    assert not np.array_equal(rg.step_rotations(cfg, 1, 4), r_direct)
    assert not np.array_equal(rg.step_rotations(cfg, 2, 3), r_direct)
    other = load_config(cfg, {"run.spawn_key": [1]})
    assert not np.array_equal(rg.step_rotations(other, 1, 3), r_direct)
    assert np.allclose(np.linalg.det(r_direct), 1.0)
    assert np.allclose(np.einsum("sij,skj->sik", r_direct, r_direct), np.eye(3))


def test_coupling_flow():
    cfg = _cfg(**{"model.coupling": 0.08, "lattice.n0": 2})
    assert rg.coupling_at_step(cfg, 0) == 0.08
    assert rg.coupling_at_step(cfg, 2) == pytest.approx(0.08 / 64)


def test_auto_frequency_grid_follows_spectrum():
    cfg = _cfg(**{"observables.omega_points": 10})
    edges, centres = rg.frequency_grid(cfg, [0.1, 0.2, 0.4], [0.1, 0.2, 0.4, 1.0, 3.0])
    assert edges.shape == (11,) and centres.shape == (10,)
    assert edges[0] < 0.1 and edges[-1] > 2.9
    assert np.allclose(np.diff(np.log(edges)), np.log(edges[1] / edges[0]))
    assert np.allclose(centres, np.sqrt(edges[1:] * edges[:-1]))
    fixed = load_config(cfg, {"observables.omega_min": 0.01, "observables.omega_max": 1.0})
    e2, _ = rg.frequency_grid(fixed, [5.0], [5.0])
    assert e2[0] == pytest.approx(0.01) and e2[-1] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Reductions, each against an independent route
# --------------------------------------------------------------------------------------------
def test_powder_lt_equals_isotropic_projection_and_icosahedral_average():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    c = a @ a.T
    chi_l, chi_t = rg.powder_lt(c)
    ref_l, ref_t, _ = isotropic_projection(c)
    assert chi_l == pytest.approx(ref_l, rel=1e-13)
    assert chi_t == pytest.approx(ref_t, rel=1e-13)
    # third route: response.chi_components' exact icosahedral powder average on a real spectrum
    e = np.array([0.0, 0.3, 0.7])
    s = rng.standard_normal((6, 3, 3))
    s = s + np.swapaxes(s, 1, 2)
    trans = transitions_from_levels(e, s, [0.1])
    grid = np.geomspace(0.05, 2.0, 9)
    comp = chi_components(trans, grid, directions=(), line="bins")
    l_, t_ = rg.powder_lt(comp["tensor"])
    assert np.allclose(l_, comp["powder"]["l"], rtol=1e-12, atol=1e-14)
    assert np.allclose(t_, comp["powder"]["t"], rtol=1e-12, atol=1e-14)


def test_direction_vectors():
    e_l, e_t = rg.direction_vectors(["100", "110:001"])
    assert np.allclose(e_l[0], [1, 0, 0, 0, 0, 0])
    assert np.allclose(e_t[0] @ e_t[0], 0.5)  # ‖(qp + pq)/2‖² = 1/2
    assert np.allclose(e_t[1], [0, 0, 0, 0.5, 0.5, 0])  # q = (1,1,0)/√2, p = z → √2·(yz, xz) = 1/2


def test_pool_transitions_match_response():
    rng = np.random.default_rng(1)
    e = np.sort(rng.random((4, 3)), axis=1)
    e[:, 0] = 0.0
    s = rng.standard_normal((4, 6, 3, 3))
    s = s + np.swapaxes(s, 2, 3)
    om, amp, pop, seg = rg.pool_transitions(e, s, 0.2)
    for p in range(4):
        tr = transitions_from_levels(e[p], s[p], [0.2])
        sel = seg == p
        assert np.allclose(om[sel], tr.omega)
        assert np.allclose(amp[sel], tr.amp)
        assert np.allclose(pop[sel], tr.population[0])


def test_band_weight_tensors_brute_force():
    rng = np.random.default_rng(2)
    m = 50
    omega = rng.uniform(-1, 2, m)
    amp = rng.standard_normal((m, 6))
    pop = rng.random(m)
    seg = np.sort(rng.integers(0, 3, m))
    band = (0.2, 1.5)
    w = rg.band_weight_tensors(omega, amp, pop, 0.3, seg, 3, band)
    ref = np.zeros((3, 6, 6))
    for k in range(m):
        if band[0] <= omega[k] < band[1]:
            ref[seg[k]] += -np.pi * pop[k] * (1 - np.exp(-omega[k] / 0.3)) * np.outer(amp[k], amp[k])
    assert np.allclose(w, ref, rtol=1e-12, atol=1e-14)


def test_jackknife_ratio():
    rng = np.random.default_rng(3)
    wl = -rng.random(30) - 0.5
    wt = -rng.random(30) - 0.5
    r, err = rg.jackknife_ratio(wl, wt)
    assert r == pytest.approx(np.sqrt(wl.sum() / wt.sum()))
    loo = np.array([np.sqrt((wl.sum() - wl[i]) / (wt.sum() - wt[i])) for i in range(30)])
    assert err == pytest.approx(np.sqrt(29 / 30 * np.sum((loo - loo.mean()) ** 2)))
    # proportional samples: no scatter, no error
    r2, err2 = rg.jackknife_ratio(2.25 * wt, wt)
    assert r2 == pytest.approx(1.5) and err2 == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(rg.jackknife_ratio(wl[:1], wt[:1])[1])


# --------------------------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    cfg = load_config(
        {
            "model": {"block": "generic", "n": 3, "mb_bare": 1.5, "cl_over_ct": 1.6, "coupling": 0.0},
            "lattice": {"n0": 2},
            "rg": {"steps": 3, "pool_size": 12, "pool_strategy": "partition", "n_keep": 3},
            "solver": {"method": "perturbative"},
            "observables": {"temperatures": [0.02, 0.1], "omega_points": 24},
            "run": {"seed": 11, "progress": "none"},
        }
    )
    return rg.run(cfg, tmp_path_factory.mktemp("null") / "null.h5")


def test_null_flow_is_flat(null_run):
    """g = 0, partition: MB consistent with the bare ratio and between steps (BRIEF §1b null test)."""
    with open_trajectory(null_run) as tr:
        steps = tr.steps
        mb_bare = tr.run_config.model.mb_bare
    assert len(steps) == 3
    for s in steps:
        assert np.isfinite(s.mb_ratio_err) and s.mb_ratio_err > 0
        assert abs(s.mb_ratio - mb_bare) < 3.0 * s.mb_ratio_err, (s.index, s.mb_ratio, s.mb_ratio_err)
    for a, b in zip(steps, steps[1:]):
        assert abs(a.mb_ratio - b.mb_ratio) < 3.0 * np.hypot(a.mb_ratio_err, b.mb_ratio_err)


def test_null_superblock_weight_is_sum_of_members(null_run):
    """At g = 0 a super block's powder band weight is exactly the sum of its (rotated) members'."""
    with open_trajectory(null_run) as tr:
        for s in tr.steps:
            temp = s.reference_temperature
            om, amp, pop, seg = rg.pool_transitions(s.pool_energies, s.pool_stress, temp)
            w_pool = rg.band_weight_tensors(om, amp, pop, temp, seg, s.pool_energies.shape[0], s.reference_band)
            pl, pt = rg.powder_lt(w_pool)
            assert np.allclose(s.weight_l, pl[s.members].sum(axis=1), rtol=1e-10)
            assert np.allclose(s.weight_t, pt[s.members].sum(axis=1), rtol=1e-10)
            assert s.coupling_g == 0.0
            assert s.diagnostics["n_resonant_pairs_total"] == 0
            assert s.diagnostics["n_resonant_single_double_total"] == 0


def test_single_double_resonances_are_counted_per_step(tmp_path):
    """Strong coupling, n = 3: single–double resonances occur; the step total is the per-block sum."""
    cfg = load_config({
        "model": {"block": "generic", "n": 3, "coupling": 0.5},
        "lattice": {"n0": 2},
        "rg": {"steps": 1, "pool_size": 6, "pool_strategy": "partition", "n_keep": 3},
        "observables": {"temperatures": [0.05], "omega_points": 12},
        "run": {"seed": 3, "progress": "none"},
    })
    with open_trajectory(rg.run(cfg, tmp_path / "sd.h5")) as tr:
        d = tr.steps[0].diagnostics
    per_block = np.asarray(d["n_resonant_single_double"])
    assert per_block.shape == (6,)
    assert d["n_resonant_single_double_total"] == per_block.sum() > 0


def test_partition_pool_chain_and_diversity(null_run):
    with open_trajectory(null_run) as tr:
        steps = tr.steps
        final = tr.final_pool
    sizes = [s.pool_energies.shape[0] for s in steps]
    assert sizes == [12 * 512, 12 * 64, 12 * 8]
    for a, b in zip(steps, steps[1:]):
        assert np.array_equal(a.superblock_energies, b.pool_energies)
        assert np.array_equal(a.superblock_stress, b.pool_stress)
    assert np.array_equal(final[0], steps[-1].superblock_energies)
    for s in steps:
        # partition: every initial block is an ancestor, every lineage distinct
        assert s.diagnostics["pool_distinct_ancestors"] == 12 * 512
        assert s.diagnostics["pool_distinct_lineages"] == s.pool_energies.shape[0]
        assert s.diagnostics["pool_collapsed"] == 0
        assert 0.0 <= s.diagnostics["isotropy_residual"] < 0.2


def _dense_superblock(pool_e, pool_t, members, rotations, n0, g, cl_over_ct):
    """Independent dense ED of H = Σ H0 + g Σ_{s≠s'} T^s·Λ(x_s − x_s')·T^s' (ordered pairs, Eq. 2.16)."""
    nb = members.size
    n = pool_e.shape[1]
    e = pool_e[members]
    t = np.einsum("sab,sbmn->samn", rotation_mandel(rotations), pool_t[members])
    pos = lattice_positions(n0)
    dim = n**nb

    def embed(s, mat):
        return np.kron(np.kron(np.eye(n**s), mat), np.eye(n ** (nb - s - 1)))

    ops = [[embed(s, t[s, a]) for a in range(6)] for s in range(nb)]
    h = sum(embed(s, np.diag(e[s])) for s in range(nb))
    for s in range(nb):
        for u in range(s + 1, nb):
            lam = g * stress_coupling_mandel(pos[s] - pos[u], cl_over_ct)
            for a in range(6):
                field = sum(lam[a, b] * ops[u][b] for b in range(6))
                h = h + 2.0 * ops[s][a] @ field  # both orders of the pair; Λ(−r) = Λ(r)
    h = 0.5 * (h + h.T)
    evals, evecs = np.linalg.eigh(h)
    ts = np.stack([evecs.T @ sum(ops[s][a] for s in range(nb)) @ evecs for a in range(6)])
    assert ts.shape == (6, dim, dim)
    return evals - evals[0], ts


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    cfg = load_config(
        {
            "model": {"block": "generic", "n": 2, "mb_bare": 1.4, "cl_over_ct": 1.7, "coupling": 0.05},
            "lattice": {"n0": 2},
            "rg": {"steps": 1, "pool_size": 2, "pool_strategy": "partition", "n_keep": 2},
            "solver": {"method": "exact"},
            "observables": {"temperatures": [0.05, 0.2], "omega_points": 16},
            "run": {"seed": 3, "progress": "none"},
        }
    )
    return rg.run(cfg, tmp_path_factory.mktemp("exact") / "exact.h5")


@pytest.mark.slow
def test_independent_recomputation_exact(exact_run):
    """Rebuild each super block from the file's pool, members and rotations by dense ED; match the
    truncated block (next pool) in energies and |matrix elements|², and the band weights."""
    with open_trajectory(exact_run) as tr:
        step = tr.steps[0]
        final_e, final_t = tr.final_pool
        cfg = tr.run_config
    n_keep = cfg.rg.n_keep
    for j in range(step.members.shape[0]):
        evals, ts = _dense_superblock(step.pool_energies, step.pool_stress, step.members[j], step.rotations[j],
                                      cfg.lattice.n0, step.coupling_g, cfg.model.cl_over_ct)
        assert np.allclose(final_e[j], evals[:n_keep], rtol=0, atol=1e-10)
        kept = ts[:, :n_keep, :n_keep]
        assert np.allclose(final_t[j] ** 2, kept**2, rtol=0, atol=1e-10)
        # band weight tensor of the super block (Boltzmann over all states, sharp lines)
        temp = step.reference_temperature
        p = np.exp(-evals / temp)
        p /= p.sum()
        om = evals[None, :] - evals[:, None]
        sel = (om >= step.reference_band[0]) & (om < step.reference_band[1])
        fac = np.where(sel, -np.pi * p[:, None] * -np.expm1(-om / temp), 0.0)
        w = np.einsum("mn,amn,bmn->ab", fac, ts, ts)
        assert np.allclose(step.weight_tensor[j], w, rtol=1e-8, atol=1e-12)


def _perturbative_run(tmp_path, g):
    cfg = load_config({
        "model": {"block": "generic", "n": 2, "mb_bare": 1.4, "cl_over_ct": 1.7, "coupling": g},
        "lattice": {"n0": 2},
        "rg": {"steps": 1, "pool_size": 3, "pool_strategy": "partition", "n_keep": 3},
        "observables": {"temperatures": [0.05], "omega_points": 12},
        "run": {"seed": 5, "progress": "none"},
    })
    with open_trajectory(rg.run(cfg, tmp_path / f"pt_{g:g}.h5")) as tr:
        return tr.steps[0], tr.run_config


def test_stored_superblock_stress_is_first_order(tmp_path):
    """Every element of superblocks/stress (the operator handed to the next step) against an
    independent dense ED of the stored pool, members and rotations: the error falls like g².

    Super blocks with a resonant cluster or a dressed member (here: one with a soft member, gap
    0.0065) are left out: inside a cluster the mixing is only O(g) accurate (docs/trajectory-format.md).
    """
    runs = [_perturbative_run(tmp_path, g) for g in (3e-3, 1e-3)]
    keys = ("n_resonant_pairs", "n_resonant_single_double", "n_dressed_members")
    clean = [j for j in range(3) if all(step.diagnostics[k][j] == 0 for step, _ in runs for k in keys)]
    assert len(clean) == 2
    errs = []
    for step, cfg in runs:
        worst = 0.0
        for j in clean:
            evals, ts = _dense_superblock(step.pool_energies, step.pool_stress, step.members[j], step.rotations[j],
                                          cfg.lattice.n0, step.coupling_g, cfg.model.cl_over_ct)
            kept = ts[:, :3, :3]  # (n_keep = 3: no double excitation among the kept ED states here)
            got = step.superblock_stress[j]
            sign = np.sign(np.einsum("ai,ai->i", got[:, 0, :], kept[:, 0, :]))
            sign[0] = 1.0
            kept = kept * sign[None, :, None] * sign[None, None, :]
            np.testing.assert_allclose(step.superblock_energies[j], evals[:3], atol=50 * step.coupling_g**2)
            worst = max(worst, np.abs(got - kept).max() / np.abs(kept[:, 0, 1:]).max())
        errs.append(worst)
    assert errs[0] / errs[1] > 3**1.7, errs
