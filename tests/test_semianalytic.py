"""Tests of the interaction split (theory.interaction_split) and the semi-analytic route (theory.semianalytic)."""

import warnings

import numpy as np
import pytest

from blocksim import spectra
from blocksim.model import blocks
from blocksim.model.coupling import displacement_table, lattice_positions, pair_couplings_reference
from blocksim.model.tensors import BULK_PROJECTOR, DEVIATORIC_PROJECTOR, random_rotation, rotation_mandel
from blocksim.theory import semianalytic as sa
from blocksim.theory.interaction_split import band_tensor, split_band_tensors

SPEC = {"kind": "generic", "n": 3}
BAND = dict(omegas=(0.3, 0.45, 0.6), width=0.08)


def _superblock(rng, n0, g, positions=None):
    pos = lattice_positions(n0) if positions is None else positions
    e, s = blocks.make_blocks(rng, pos.shape[0], SPEC)
    rot = random_rotation(rng, pos.shape[0])
    return spectra.assemble_superblock(e, s, rot, n0, g, 1.6, positions=pos)


def _solve(sb, thr=0.1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectra.ResonanceWarning)
        return spectra.solve(sb, "perturbative", resonance_threshold=thr)


@pytest.mark.parametrize("g", [pytest.param(3e-3, id="resonances"), pytest.param(3e-2, id="many-resonances")])
def test_split_adds_up_exactly(g):
    sb = _superblock(np.random.default_rng(4), 4, g)
    sp = _solve(sb)
    assert sp.diagnostics["n_resonant_clusters"] > 0
    t = split_band_tensors(sb, sp, 0.01, **BAND)
    scale = np.abs(t["im_g"]).max()
    np.testing.assert_allclose(t["im_g_res"] + t["im_g_non"], t["im_g"], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(t["im_0_res"] + t["im_0_non"], t["im_0"], rtol=0, atol=1e-12 * scale)
    # the resonant flags: states = ground + every node; singles in clusters or dressed
    assert sp.resonant_states.shape == sp.energies.shape and not sp.resonant_states[0]
    assert sp.resonant_singles.sum() >= sp.diagnostics["resonant_fraction"] * sb.n_blocks * (sb.n_levels - 1) - 1e-9


@pytest.mark.parametrize("g", [3e-3, 3e-2])
def test_cluster_part_is_a_subset_of_the_resonant_part(g):
    """The resonant part splits into the clusters' and the dressed members': masks nested, tensors additive."""
    from blocksim.theory.interaction_split import cluster_masks, member_transitions_split

    sb = _superblock(np.random.default_rng(4), 4, g)
    sp = _solve(sb)
    t = split_band_tensors(sb, sp, 0.01, **BAND)
    tg = sp.transitions([0.01])
    t0_size = sb.n_blocks * (sb.n_levels - 1) * sb.n_levels
    cl_g, cl_0 = cluster_masks(sb, sp, tg.omega.size, t0_size)
    _, m0 = member_transitions_split(sb, sp, [0.01])
    assert not np.any(cl_g & ~sp.resonant_mask()) and not np.any(cl_0 & ~m0)
    assert cl_g.any() and cl_0.any()
    # clusters holding a double (single–double resonances) are a subset of the clusters
    sd_g, sd_0 = cluster_masks(sb, sp, tg.omega.size, t0_size, with_doubles=True)
    assert not np.any(sd_g & ~cl_g) and not np.any(sd_0 & ~cl_0)
    assert sd_g.any() == (sp.diagnostics["n_resonant_single_double"] > 0)
    # the rest of the resonant set is exactly the dressed members' (none without dressing)
    rest = sp.resonant_mask() & ~cl_g
    assert rest.any() == bool(sp.dressed_members.any())
    scale = np.abs(t["im_g"]).max()
    if not sp.dressed_members.any():  # g = 3e-3 here; at 3e-2, 29 of 64 members are dressed
        np.testing.assert_allclose(t["im_g_cluster"], t["im_g_res"], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(t["im_0_cluster"], t["im_0_res"], rtol=0, atol=1e-12 * scale)


def test_members_at_g0_equal_the_uncoupled_solver():
    rng = np.random.default_rng(5)
    sb = _superblock(rng, 3, 3e-3)
    sb0 = spectra.assemble_superblock(sb.energies, sb.stress, np.tile(np.eye(3), (sb.n_blocks, 1, 1)), 3, 0.0, 1.6)
    t = split_band_tensors(sb, _solve(sb), 0.01, **BAND)
    ref = band_tensor(_solve(sb0).transitions([0.01]), "im_chi", **BAND)
    np.testing.assert_allclose(t["im_0"], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_no_resonances_at_zero_coupling_split_is_all_nonresonant():
    sb = _superblock(np.random.default_rng(6), 3, 0.0)
    sp = _solve(sb)
    assert not sp.resonant_mask().any()
    t = split_band_tensors(sb, sp, 0.01, **BAND)
    assert np.all(t["im_g_res"] == 0) and np.all(t["im_0_res"] == 0)
    np.testing.assert_allclose(t["im_g"], t["im_0"], atol=1e-12 * np.abs(t["im_0"]).max())


def test_rank3_projection_is_rotation_invariant_and_idempotent():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(6, 6, 6))
    p = sa.isotropic_rank3_projection(d)
    q = rotation_mandel(random_rotation(rng))
    np.testing.assert_allclose(np.einsum("ai,bj,ck,ijk->abc", q, q, q, p), p, atol=1e-12)
    np.testing.assert_allclose(sa.isotropic_rank3_projection(p), p, atol=1e-12)
    # the Haar average of rotated copies converges to the projection
    rots = rotation_mandel(random_rotation(rng, 4000))
    avg = np.einsum("rai,rbj,rck,ijk->abc", rots, rots, rots, 0.5 * (d + d.transpose(1, 0, 2))) / 4000
    assert np.abs(avg - p).max() < 0.15 * np.abs(p).max() + 0.1


@pytest.mark.parametrize("shape", ["cube", "sphere"])
def test_pair_counts_and_lattice_sum_against_brute_force(shape):
    n0 = 4
    pos = lattice_positions(n0) if shape == "cube" else spectra.sphere_positions(n0)
    counts = sa.pair_counts(pos)
    brute = np.zeros_like(counts)
    for a in pos:
        for b in pos:
            if np.any(a != b):
                brute[tuple(a - b + n0 - 1)] += 1
    np.testing.assert_array_equal(counts, brute)
    lam = pair_couplings_reference(pos, 1.6)  # [N, N, 6, 6], ρc_t² = 1
    np.testing.assert_allclose(sa.lattice_sum(pos, 1.6), lam.sum(axis=(0, 1)), atol=1e-12)


@pytest.mark.parametrize("shape", ["cube", "sphere"])
def test_signed_lattice_sum_has_no_isotropic_part(shape):
    """Λ_iikk = Λ_ikik = 0 for every r (zero spherical mean of a rotation-invariant contraction), so the powder
    projection of the first-order non-resonant interaction part vanishes for every site set."""
    pos = lattice_positions(6) if shape == "cube" else spectra.sphere_positions(6)
    s = sa.lattice_sum(pos, 1.6)
    assert abs(np.sum(s * BULK_PROJECTOR)) < 1e-12 * np.abs(s).max()
    assert abs(np.sum(s * DEVIATORIC_PROJECTOR)) < 1e-12 * np.abs(s).max()
    assert np.abs(s).max() > 1.0  # the anisotropic (cubic) part is not small


def test_resonant_pair_estimate_grows_with_coupling_falls_with_threshold():
    mom = sa.single_block_moments(SPEC, np.random.default_rng(2), samples=2000, **BAND)
    pos = lattice_positions(4)
    est = [sa.resonant_pair_estimate(mom, pos, 1.6, g, th, np.random.default_rng(3), n_levels=3)
           for g, th in ((1e-3, 0.1), (3e-3, 0.1), (1e-3, 0.2))]
    assert 0 < est[0] < est[1] and est[2] < est[0]  # |V| > θ|ΔE|: a larger θ is harder to meet


@pytest.mark.slow
def test_semianalytic_matches_the_solver_nonresonant_part_at_small_g():
    """Regression of the solver's non-resonant δχ tensor on the semi-analytic one (N0 = 3 cube, g = 1e-4,
    θ = 0.05): coefficient 1 within 3 standard errors of 200 independent samples. The projection is blind to the
    isotropic part, where the first-order prediction is 0 and the solver's unnormalized first-order amplitudes add
    a θ-dependent excess."""
    mom = sa.single_block_moments(SPEC, np.random.default_rng(7), samples=20000, **BAND)
    n0, g = 3, 1e-4
    pos = lattice_positions(n0)
    dchi, base = sa.predicted_tensors(mom, sa.lattice_sum(pos, 1.6), pos.shape[0])
    rng = np.random.default_rng(1)
    coef, base_mc = [], []
    for _ in range(200):
        sb = _superblock(rng, n0, g)
        sp = _solve(sb, 0.05)
        t = split_band_tensors(sb, sp, 0.01, **BAND)
        coef.append((t["im_g_non"] - t["im_0_non"]) / g)
        base_mc.append(t["im_0"])
    scale = np.trace(np.mean(base_mc, axis=0)) / np.trace(base)  # −π: Im χ carries −π Σ |M|² δ
    assert scale == pytest.approx(-np.pi, rel=0.05)
    pred = dchi * scale
    c = np.einsum("kab,ab->k", np.array(coef), pred) / np.sum(pred * pred)
    err = c.std(ddof=1) / np.sqrt(c.size)
    assert err < 0.3
    assert abs(c.mean() - 1.0) < 3 * err
