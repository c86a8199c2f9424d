"""Tests of blocksim.model.blocks: random block ensembles (BRIEF §1.1, DESIGN "Stress ensemble")."""

from __future__ import annotations

import numpy as np
import pytest

from blocksim.model import blocks
from blocksim.errors import InputError
from blocksim.model.tensors import direction_strains, random_rotation, rotation_mandel, to_mandel, from_mandel

SQRT_4_3 = np.sqrt(4.0 / 3.0)


def ground_row_chi(energies, stress, e_l, e_t):
    """Per-block T = 0 spectral weights χ_l = Σ_{m≥1} (e_l·T_{0m})², χ_t likewise ([P] each)."""
    row = stress[:, :, 0, 1:]  # [P, 6, n−1]
    chi_l = np.sum(np.einsum("a,pam->pm", e_l, row) ** 2, axis=1)
    chi_t = np.sum(np.einsum("a,pam->pm", e_t, row) ** 2, axis=1)
    return chi_l, chi_t


def ratio_and_se(x, y):
    """Ratio of means r = x̄/ȳ and its delta-method standard error."""
    r = x.mean() / y.mean()
    se = np.std(x - r * y, ddof=1) / np.sqrt(x.size) / y.mean()
    return r, se


ENSEMBLES = [
    pytest.param({"kind": "generic", "n": 4, "level_distribution": "uniform"}, 1.6, id="generic-uniform-1.6"),
    pytest.param({"kind": "generic", "n": 3, "level_distribution": "wigner"}, 1.8, id="generic-wigner-1.8"),
    pytest.param({"kind": "generic", "n": 3, "level_distribution": "poisson"}, SQRT_4_3, id="generic-pure-shear"),
    pytest.param({"kind": "ttls", "k": 1, "delta_max": 1.0, "delta0_min": 0.01, "delta0_max": 1.0}, 1.5, id="ttls-k1"),
    pytest.param({"kind": "ttls", "k": 2, "delta_max": 0.5, "delta0_min": 0.01, "delta0_max": 1.0}, 1.7, id="ttls-k2"),
    pytest.param({"kind": "goe", "n": 4, "level_scale": 0.5}, 1.6, id="goe-1.6"),
]


@pytest.mark.parametrize("spec, mb_bare", ENSEMBLES)
def test_ensemble_reproduces_bare_ratio(spec, mb_bare):
    """⟨χ_l⟩/⟨χ_t⟩ over 8000 blocks equals mb_bare² within 3 standard errors, along z and along a random axis."""
    rng = np.random.default_rng(20240611)
    energies, stress = blocks.make_blocks(rng, 8000, dict(spec, mb_bare=mb_bare))
    for q, p in [([0, 0, 1], [1, 0, 0]), ([0.3, -0.5, 0.8], [0.5, 0.3, 0.0])]:
        e_l, e_t = direction_strains(q, p)
        chi_l, chi_t = ground_row_chi(energies, stress, e_l, e_t)
        r, se = ratio_and_se(chi_l, chi_t)
        assert abs(r - mb_bare**2) < 3.0 * se, (r, mb_bare**2, se)
        assert se < 0.05 * mb_bare**2  # the test has power


def test_shear_normalisation_is_fixed():
    """A_s = 1: for generic GOE stress ⟨(e_t·T_01)²⟩ = ‖e_t‖²·var(x_01) = 1/2, whatever mb_bare is."""
    e_l, e_t = direction_strains([0, 0, 1], [1, 0, 0])
    for mb_bare in (SQRT_4_3, 1.6, 2.5):
        rng = np.random.default_rng(7)
        _, stress = blocks.generic_blocks(rng, 6000, 2, mb_bare=mb_bare)
        x = np.einsum("a,pa->p", e_t, stress[:, :, 0, 1]) ** 2
        assert abs(x.mean() - 0.5) < 3.0 * x.std(ddof=1) / np.sqrt(x.size)


def test_isotropic_amplitudes_formula():
    for r in (SQRT_4_3, 1.5, 1.84, 3.0):
        a_b, a_s = blocks.isotropic_amplitudes(r)
        assert a_s == 1.0
        assert np.isclose(4.0 / 3.0 + (2.0 / 3.0) * (a_b / a_s) ** 2, r * r, rtol=1e-14)


def test_isotropic_tensor_covariance():
    """⟨t tᵀ⟩ = A_b² J + A_s² K (J bulk projector, K = 1 − J) for random_isotropic_tensor."""
    rng = np.random.default_rng(3)
    t = blocks.random_isotropic_tensor(rng, 200000, 1.6)
    cov = t.T @ t / len(t)
    a_b, a_s = blocks.isotropic_amplitudes(1.6)
    jmat = np.zeros((6, 6))
    jmat[:3, :3] = 1.0 / 3.0
    expect = a_b**2 * jmat + a_s**2 * (np.eye(6) - jmat)
    assert np.allclose(cov, expect, atol=0.02)


def test_basis_is_orthonormal_and_deviatoric():
    b = blocks.ISOTROPIC_BASIS
    assert np.allclose(b @ b.T, np.eye(6), atol=1e-15)
    assert np.allclose(np.trace(from_mandel(b[1:]), axis1=1, axis2=2), 0.0, atol=1e-15)


@pytest.mark.parametrize(
    "value",
    [pytest.param(1.1, id="below-sqrt4/3"), pytest.param(float("nan"), id="nan"),
     pytest.param(float("inf"), id="inf"), pytest.param(-2.0, id="negative")],
)
def test_mb_bare_below_bound_rejected(value):
    with pytest.raises(InputError, match=r"mb_bare = .*sqrt\(4/3\)"):
        blocks.isotropic_amplitudes(value)
    with pytest.raises(InputError, match="mb_bare"):
        blocks.generic_blocks(np.random.default_rng(0), 2, 3, mb_bare=value)


# ------------------------------------------------------------------------------------------------
# Block structure
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [pytest.param({"kind": "generic", "n": 5, "level_distribution": d}, id=f"generic-{d}")
     for d in blocks.LEVEL_DISTRIBUTIONS]
    + [pytest.param({"kind": "ttls", "k": 3}, id="ttls-k3"), pytest.param({"kind": "goe", "n": 5}, id="goe")],
)
def test_block_contract(spec):
    """Array contract: energies [P, n] ascending with ground exactly 0; stress [P, 6, n, n] symmetric."""
    energies, stress = blocks.make_blocks(np.random.default_rng(11), 50, spec)
    n = energies.shape[1]
    assert stress.shape == (50, 6, n, n)
    assert np.all(energies[:, 0] == 0.0)
    assert np.all(np.diff(energies, axis=1) >= 0)
    assert np.array_equal(stress, np.swapaxes(stress, -1, -2))
    assert np.all(np.isfinite(stress))


@pytest.mark.parametrize(
    "distribution, mean_spacing, spacing_var",
    [pytest.param("poisson", 1.0, 1.0, id="poisson"), pytest.param("wigner", 1.0, 4.0 / np.pi - 1.0, id="wigner")],
)
def test_spacing_distributions(distribution, mean_spacing, spacing_var):
    """Poisson: exponential spacings (var = mean²); Wigner surmise: mean 1, var 4/π − 1 (× level_scale)."""
    scale = 0.7
    energies, _ = blocks.generic_blocks(np.random.default_rng(5), 4000, 4, level_distribution=distribution,
                                        level_scale=scale)
    s = np.diff(energies, axis=1).ravel() / scale
    se = s.std(ddof=1) / np.sqrt(s.size)
    assert abs(s.mean() - mean_spacing) < 3.0 * se
    assert abs(s.var() - spacing_var) < 0.05 * spacing_var


@pytest.mark.parametrize(
    "distribution, mean_level",
    [pytest.param("uniform", 0.5, id="uniform"), pytest.param("exponential", 1.0, id="exponential")],
)
def test_iid_level_distributions(distribution, mean_level):
    scale = 2.0
    energies, _ = blocks.generic_blocks(np.random.default_rng(6), 4000, 3, level_distribution=distribution,
                                        level_scale=scale)
    e = energies[:, 1:].ravel() / scale
    assert abs(e.mean() - mean_level) < 3.0 * e.std(ddof=1) / np.sqrt(e.size)
    if distribution == "uniform":
        assert e.max() <= 1.0 and e.min() > 0.0


def test_goe_mean_spacing_exact():
    energies, _ = blocks.goe_blocks(np.random.default_rng(8), 20, 6, level_scale=0.3)
    assert np.allclose(energies[:, -1] / 5, 0.3, rtol=1e-13)


def test_ttls_parameters_distribution():
    """Δ uniform on [−Δmax, Δmax]; log Δ0 uniform on [log Δ0min, log Δ0max] (P(Δ0) ∝ 1/Δ0)."""
    rng = np.random.default_rng(9)
    delta, delta0 = blocks.ttls_parameters(rng, 20000, delta_max=2.0, delta0_min=1e-3, delta0_max=1.0)
    assert np.all(np.abs(delta) <= 2.0) and np.all((delta0 >= 1e-3) & (delta0 <= 1.0))
    assert abs(delta.mean()) < 3 * delta.std() / np.sqrt(delta.size)
    assert abs(delta.var() - 4.0 / 3.0) < 0.03 * 4.0 / 3.0
    lg = np.log(delta0)
    mid = 0.5 * (np.log(1e-3) + np.log(1.0))
    assert abs(lg.mean() - mid) < 3 * lg.std() / np.sqrt(lg.size)
    assert abs(lg.var() - (np.log(1e3)) ** 2 / 12) < 0.03 * (np.log(1e3)) ** 2 / 12


def _ttls_by_kron(delta, delta0, t, gamma):
    """Independent construction of one k-TTLS block with np.kron (state bits: TTLS 0 least significant)."""
    k = len(delta)
    e = np.hypot(delta, delta0)
    h = np.zeros((1, 1))
    s = np.zeros((6, 1, 1))
    for i in range(k):  # prepend TTLS i as the more significant factor
        hi = np.diag([0.0, e[i]])
        si = np.array([[-delta[i], delta0[i]], [delta0[i], delta[i]]]) / e[i] * gamma / 2
        dim = h.shape[0]
        h = np.kron(np.eye(2), h) + np.kron(hi, np.eye(dim))
        s = np.array([np.kron(np.eye(2), s[a]) + np.kron(t[i, a] * si, np.eye(dim)) for a in range(6)])
    order = np.argsort(np.diag(h), kind="stable")
    return np.diag(h)[order], s[:, order][:, :, order]


@pytest.mark.parametrize("k", [pytest.param(1, id="k1"), pytest.param(2, id="k2"), pytest.param(3, id="k3")])
def test_ttls_blocks_match_kron_construction(k):
    """The bit-arithmetic product block equals an explicit Kronecker-product construction (same draws)."""
    kw = dict(delta_max=1.0, delta0_min=0.01, delta0_max=1.0)
    energies, stress = blocks.ttls_blocks(np.random.default_rng(12), 5, k, gamma=0.8, mb_bare=1.6, **kw)
    rng = np.random.default_rng(12)  # replay the documented draw order: (Δ, Δ0), then the 6-vectors
    delta, delta0 = blocks.ttls_parameters(rng, (5, k), **kw)
    t = blocks.random_isotropic_tensor(rng, 5 * k, 1.6).reshape(5, k, 6)
    for p in range(5):
        e_ref, s_ref = _ttls_by_kron(delta[p], delta0[p], t[p], 0.8)
        assert np.allclose(energies[p], e_ref, atol=1e-14)
        assert np.allclose(stress[p], s_ref, atol=1e-14)


def test_ttls_single_sign_convention():
    """k = 1: stress = t·(γ/2)[[−D, M], [M, D]] in (lower, upper) order, so T_01/T_00 = −Δ0/Δ, trace 0."""
    rng = np.random.default_rng(13)
    energies, stress = blocks.ttls_blocks(rng, 200, 1, delta_max=1.0, delta0_min=0.05, delta0_max=1.0, gamma=2.0)
    rng = np.random.default_rng(13)
    delta, delta0 = blocks.ttls_parameters(rng, (200, 1), delta_max=1.0, delta0_min=0.05, delta0_max=1.0)
    assert np.allclose(energies[:, 1], np.hypot(delta, delta0)[:, 0], rtol=1e-14)
    assert np.allclose(stress[:, :, 0, 0], -stress[:, :, 1, 1])
    ratio = stress[:, :, 0, 1] / stress[:, :, 0, 0]
    assert np.allclose(ratio, (-delta0 / delta)[:, :1] * np.ones((1, 6)), rtol=1e-10)


def test_ttls_ground_row_single_flips():
    """From the ground state T connects only to the k single-flip states, at energies E_i."""
    k = 3
    energies, stress = blocks.ttls_blocks(np.random.default_rng(14), 10, k)
    assert np.allclose(np.trace(stress, axis1=2, axis2=3), 0.0, atol=1e-13)
    for p in range(10):
        nonzero = np.nonzero(np.any(np.abs(stress[p, :, 0, 1:]) > 0, axis=0))[0] + 1
        assert len(nonzero) == k
        # the single-flip energies E_i add up to the all-excited level
        e_sum = energies[p, -1]  # all excited: E_1 + ... + E_k
        assert np.isclose(np.sum(energies[p, nonzero]), e_sum, rtol=1e-12)


def test_rotate_blocks_matches_tensor_rotation():
    rng = np.random.default_rng(15)
    _, stress = blocks.generic_blocks(rng, 4, 3)
    rot = random_rotation(rng, 4)
    out = blocks.rotate_blocks(stress, rot)
    for p in range(4):
        t = from_mandel(np.moveaxis(stress[p], 0, -1))  # [n, n, 3, 3]
        expect = to_mandel(rot[p] @ t @ rot[p].T)
        assert np.allclose(np.moveaxis(out[p], 0, -1), expect, atol=1e-13)
        # single-block form and e·(Q T) = (Qᵀ e)·T
        assert np.allclose(blocks.rotate_blocks(stress[p], rot[p]), out[p])
        e_l, _ = direction_strains([0, 0, 1])
        lhs = np.einsum("a,amn->mn", e_l, out[p])
        rhs = np.einsum("a,amn->mn", rotation_mandel(rot[p]).T @ e_l, stress[p])
        assert np.allclose(lhs, rhs, atol=1e-13)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
BAD = [
    pytest.param(lambda r: blocks.generic_blocks(r, 3, 1), r"n = 1: must be an integer ≥ 2", id="n=1"),
    pytest.param(lambda r: blocks.goe_blocks(r, 3, 1), r"n = 1: must be an integer ≥ 2", id="goe-n=1"),
    pytest.param(lambda r: blocks.generic_blocks(r, 0, 3), r"count = 0", id="count=0"),
    pytest.param(lambda r: blocks.generic_blocks(r, 3, 3, level_scale=float("nan")), r"level_scale = nan",
                 id="level_scale-nan"),
    pytest.param(lambda r: blocks.generic_blocks(r, 3, 3, level_distribution="wigne"), r"did you mean 'wigner'",
                 id="distribution-typo"),
    pytest.param(lambda r: blocks.ttls_blocks(r, 3, 2, delta0_min=0.0), r"delta0_min = 0.0", id="delta0_min=0"),
    pytest.param(lambda r: blocks.ttls_blocks(r, 3, 2, delta0_min=1.0, delta0_max=0.5), r"delta0_max = 0.5",
                 id="delta0_min>=max"),
    pytest.param(lambda r: blocks.ttls_blocks(r, 3, 2, delta_max=-1.0), r"delta_max = -1.0", id="delta_max<0"),
    pytest.param(lambda r: blocks.ttls_blocks(r, 3, 2, gamma=float("inf")), r"gamma = inf", id="gamma-inf"),
    pytest.param(lambda r: blocks.ttls_blocks(r, 3, 0), r"k = 0", id="k=0"),
    pytest.param(lambda r: blocks.make_blocks(r, 3, {"kind": "gue", "n": 3}), r"did you mean 'goe'", id="kind-typo"),
    pytest.param(lambda r: blocks.make_blocks(r, 3, {"kind": "ttls", "k": 2, "detla_max": 1.0}),
                 r"detla_max.*did you mean 'delta_max'", id="key-typo"),
    pytest.param(lambda r: blocks.make_blocks(r, 3, {"n": 3}), r"kind", id="no-kind"),
    pytest.param(lambda r: blocks.generic_blocks(None, 3, 3), r"rng", id="rng-none"),
    pytest.param(lambda r: blocks.rotate_blocks(np.zeros((2, 6, 3, 3)), np.zeros((3, 3, 3))), r"rotations",
                 id="rotation-shape"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input(call, message):
    with pytest.raises(InputError, match=message):
        call(np.random.default_rng(0))


@pytest.mark.parametrize("spec, mb_bare", ENSEMBLES)
def test_make_blocks_then_equals_one_generator_at_a_time(spec, mb_bare):
    """make_blocks_then (the tree's chunk roots: draws per stream, blocks for all at once) = make_blocks
    then the further draws, generator by generator, bit for bit; the rotations likewise."""
    from blocksim.model.tensors import rotations_from_normals

    spec = {**spec, "mb_bare": mb_bare}
    then = lambda rng: rng.standard_normal((9, 4))  # noqa: E731
    e, t, after = blocks.make_blocks_then([np.random.default_rng(s) for s in range(5)], 7, spec, then)
    want_e, want_t, want_r = [], [], []
    for s in range(5):
        rng = np.random.default_rng(s)
        x, y = blocks.make_blocks(rng, 7, spec)
        want_e.append(x)
        want_t.append(y)
        want_r.append(random_rotation(rng, 9))
    np.testing.assert_array_equal(e, np.concatenate(want_e))
    np.testing.assert_array_equal(t, np.concatenate(want_t))
    np.testing.assert_array_equal(rotations_from_normals(np.concatenate(after)), np.concatenate(want_r))
    with pytest.raises(InputError, match="level_distribution"):
        blocks.make_blocks_then([np.random.default_rng(0)], 3, {"kind": "generic", "n": 3, "level_distribution": "x"},
                                then)


def test_isotropic_combination_is_the_weighted_goe_sum():
    """blocks._isotropic_combination (numba) = Σ_k C[k, a]·(a_k + a_kᵀ)/√2 by einsum, to rounding."""
    rng = np.random.default_rng(51)
    normals = rng.standard_normal((200, 6, 3, 3))
    weights = blocks._component_weights(1.7)
    got = np.empty(normals.shape)
    blocks._isotropic_combination(weights, normals, got)
    want = np.einsum("ka,pkmn->pamn", weights, blocks._goe_from_normals(normals))
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(got, np.swapaxes(got, -1, -2))  # exactly symmetric
