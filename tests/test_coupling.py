"""Tests for blocksim.model.coupling: Λ of Eq. (A15) against the Kelvin solution, its symmetries, the
Joffrin–Levelut form (A1) and the differences (1)–(4) listed under Eq. (A16) of [ZL], the numba
displacement table, the lattice sums of BRIEF §1b, ΔΛ (Eq. 2.17), μ and Δμ (Eq. 5.2, 5.3), and bad input.

Units throughout: ρ = c_t = 1 (so ρ c_t² = 1), lattice spacing 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import lebedev_rule

from blocksim.model import coupling, tensors
from blocksim.errors import InputError

D = np.eye(3)
RATIOS = [pytest.param(1.2, id="cl/ct=1.2"), pytest.param(1.6, id="cl/ct=1.6"), pytest.param(2.5, id="cl/ct=2.5")]


def _random_points(seed, n=20):
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((n, 3))
    return r * rng.uniform(0.3, 5.0, size=(n, 1)) / np.linalg.norm(r, axis=1, keepdims=True)


def _alpha(cl_over_ct):
    return 1.0 - 1.0 / cl_over_ct**2


def _bracket(n):
    """The α-bracket B_ijkl(n) shared by Eq. (A15) and (A1):
    −(δ_ij δ_kl + δ_ik δ_jl + δ_jk δ_il) + 3(n_i n_j δ_kl + … six terms) − 15 n_i n_j n_k n_l."""
    e = np.einsum
    nn = np.outer(n, n)
    return (
        -(e("ij,kl->ijkl", D, D) + e("ik,jl->ijkl", D, D) + e("jk,il->ijkl", D, D))
        + 3
        * (
            e("ij,kl->ijkl", nn, D)
            + e("ik,jl->ijkl", nn, D)
            + e("il,jk->ijkl", nn, D)
            + e("jk,il->ijkl", nn, D)
            + e("jl,ik->ijkl", nn, D)
            + e("kl,ij->ijkl", nn, D)
        )
        - 15 * e("i,j,k,l->ijkl", n, n, n, n)
    )


def _dipole_part(n):
    """P_ijkl = (δ_jl − 3 n_j n_l) δ_ik, the unsymmetrized first part of Eq. (A1) without its −2."""
    return np.einsum("jl,ik->ijkl", D - 3 * np.outer(n, n), D)


def _sym(x):
    """sym_{(ij),(kl)}: average over i↔j and k↔l."""
    return 0.25 * (x + x.transpose(1, 0, 2, 3) + x.transpose(0, 1, 3, 2) + x.transpose(1, 0, 3, 2))


def _kelvin_hessian(r, alpha):
    """∂_j ∂_l G_ik(r), returned as H[i, j, k, l], differentiated by hand (ρ c_t² = 1).

    G_ik = [(2 − α) δ_ik / r + α x_i x_k / r³] / (8π), with
    ∂_j∂_l (1/r) = (3 n_j n_l − δ_jl)/r³ and
    ∂_j∂_l (x_i x_k / r³) = [δ_il δ_jk + δ_ij δ_kl − 3(n_j n_k δ_il + n_i n_j δ_kl + n_k n_l δ_ij
                              + n_i n_l δ_jk + n_i n_k δ_jl) + 15 n_i n_j n_k n_l] / r³.
    """
    x = np.linalg.norm(r)
    n = r / x
    e = np.einsum
    nn = np.outer(n, n)
    inv_r = e("ik,jl->ijkl", D, 3 * nn - D)
    quad = (
        e("il,jk->ijkl", D, D)
        + e("ij,kl->ijkl", D, D)
        - 3
        * (
            e("jk,il->ijkl", nn, D)
            + e("ij,kl->ijkl", nn, D)
            + e("kl,ij->ijkl", nn, D)
            + e("il,jk->ijkl", nn, D)
            + e("ik,jl->ijkl", nn, D)
        )
        + 15 * e("i,j,k,l->ijkl", n, n, n, n)
    )
    return ((2 - alpha) * inv_r + alpha * quad) / (8 * np.pi * x**3)


def _kelvin_gradient(r, alpha):
    """∂_l G_ik(r) as g[i, k, l] (by hand): [−(2−α) δ_ik n_l + α(δ_il n_k + n_i δ_kl − 3 n_i n_k n_l)]/(8π r²)."""
    x = np.linalg.norm(r)
    n = r / x
    e = np.einsum
    return (
        -(2 - alpha) * e("ik,l->ikl", D, n)
        + alpha * (e("il,k->ikl", D, n) + e("i,kl->ikl", n, D) - 3 * e("i,k,l->ikl", n, n, n))
    ) / (8 * np.pi * x**2)


def _fd_hessian(fun, r, h):
    """4th-order central differences for ∂_j ∂_l fun(r)[i, k], returned as H[i, j, k, l]."""
    stencil = ((-2, 1.0), (-1, -8.0), (1, 8.0), (2, -1.0))
    out = np.zeros((3, 3, 3, 3))
    for j in range(3):
        for l in range(3):
            acc = np.zeros((3, 3))
            for a, ca in stencil:
                for b, cb in stencil:
                    step = np.zeros(3)
                    step[j] += a * h
                    step[l] += b * h
                    acc += ca * cb * fun(r + step)
            out[:, j, :, l] = acc / (144.0 * h * h)
    return out


def _lebedev():
    x, w = lebedev_rule(17)  # exact for polynomials of degree ≤ 17 on the sphere
    return x.T, w


# ------------------------------------------------------------------------------------ Kelvin solution
@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_hand_hessian_matches_finite_differences_of_kelvin_green(cl_over_ct):
    """Cross-check of the hand-derived ∂∂G used below against the library's kelvin_green."""
    alpha = _alpha(cl_over_ct)
    for r in _random_points(1, n=4):
        h = 2e-3 * np.linalg.norm(r)
        fd = _fd_hessian(lambda p: coupling.kelvin_green(p, cl_over_ct), r, h)
        exact = _kelvin_hessian(r, alpha)
        assert np.max(np.abs(fd - exact)) <= 1e-6 * np.max(np.abs(exact))


@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_kelvin_green_solves_navier_with_unit_force(cl_over_ct):
    """μ∇²G_ik + (λ+μ) ∂_i ∂_j G_jk = 0 for r ≠ 0 (μ = ρc_t² = 1, λ + μ = c_l²/c_t² − 1), and the traction
    on any sphere around the origin balances the unit point force: ∮ σ_ij n_j dS = −δ_ik."""
    alpha = _alpha(cl_over_ct)
    lam_plus_mu = cl_over_ct**2 - 1.0
    lam = lam_plus_mu - 1.0
    for r in _random_points(2, n=5):
        h = _kelvin_hessian(r, alpha)  # h[i, j, k, l] = ∂_j ∂_l G_ik
        navier = np.einsum("ijkj->ik", h) + lam_plus_mu * np.einsum("jikj->ik", h)
        assert np.max(np.abs(navier)) < 1e-13 * np.max(np.abs(h))
    pts, w = _lebedev()
    radius = 0.7
    force = np.zeros((3, 3))  # force[i, k]: traction component i for a unit force along k
    for p, wt in zip(pts, w):
        g = _kelvin_gradient(radius * p, alpha)  # g[i, k, l] = ∂_l G_ik
        div = np.einsum("mkm->k", g)
        for k in range(3):
            strain_grad = g[:, k, :]  # ∂_j u_i for u = G e_k
            sigma = lam * div[k] * D + strain_grad + strain_grad.T
            force[:, k] += wt * radius**2 * sigma @ p
    np.testing.assert_allclose(force, -D, atol=1e-12)


@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_stress_coupling_is_half_symmetrized_hessian_of_kelvin_green(cl_over_ct):
    """Λ_ijkl(r) = +½ sym_{(ij),(kl)} ∂_j ∂_l G_ik(r)  (Eq. A15; BRIEF §1.2), to ≤ 1e-6 relative."""
    alpha = _alpha(cl_over_ct)
    for r in _random_points(3):
        lam = coupling.stress_coupling(r, cl_over_ct)
        target = 0.5 * _sym(_kelvin_hessian(r, alpha))
        scale = np.max(np.abs(target))
        assert np.max(np.abs(lam - target)) <= 1e-12 * scale
        # the opposite sign is far off
        assert np.max(np.abs(lam + target)) > 0.5 * scale


@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_joffrin_levelut_is_not_the_kelvin_hessian(cl_over_ct):
    """BRIEF §1b: (A1), even projected onto its minor symmetries, does not match ½ sym ∂∂G."""
    alpha = _alpha(cl_over_ct)
    for r in _random_points(4, n=5):
        jl = tensors.symmetrize4(coupling.stress_coupling(r, cl_over_ct, form="joffrin-levelut"))
        target = 0.5 * _sym(_kelvin_hessian(r, alpha))
        assert np.max(np.abs(jl - target)) > 0.1 * np.max(np.abs(target))


# ------------------------------------------------------------------------------------ symmetries
@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_lambda_symmetries(cl_over_ct):
    for r in _random_points(5):
        lam = coupling.stress_coupling(r, cl_over_ct)
        np.testing.assert_allclose(lam, lam.transpose(1, 0, 2, 3), atol=1e-15)
        np.testing.assert_allclose(lam, lam.transpose(0, 1, 3, 2), atol=1e-15)
        np.testing.assert_allclose(lam, lam.transpose(2, 3, 0, 1), atol=1e-15)
        np.testing.assert_allclose(coupling.stress_coupling(-r, cl_over_ct), lam, atol=1e-15)
        for t in (0.5, 2.0, 7.3):
            np.testing.assert_allclose(coupling.stress_coupling(t * r, cl_over_ct), lam / t**3, rtol=1e-12, atol=0)


@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_lambda_tilde_matches_a15(cl_over_ct):
    """Λ = −Λ̃/(8π|r|³) with Λ̃ = ¼ Σ_4 sym(P) + ½ α B (Eq. A15, written out independently here)."""
    alpha = _alpha(cl_over_ct)
    for r in _random_points(6, n=6):
        x = np.linalg.norm(r)
        n = r / x
        lt = _sym(_dipole_part(n)) + 0.5 * alpha * _bracket(n)
        np.testing.assert_allclose(coupling.lambda_tilde(n, cl_over_ct), lt, atol=1e-14)
        np.testing.assert_allclose(coupling.stress_coupling(r, cl_over_ct), -lt / (8 * np.pi * x**3), atol=1e-14)


@pytest.mark.parametrize("form", coupling.FORMS)
def test_lambda_tilde_has_zero_spherical_mean(form):
    """Every component of Λ̃ (a polynomial of degree 4 in n) integrates to 0 over the unit sphere."""
    pts, w = _lebedev()
    assert np.isclose(w.sum(), 4 * np.pi)
    total = sum(wt * coupling.lambda_tilde(p, 1.6, form) for p, wt in zip(pts, w))
    scale = sum(wt * np.abs(coupling.lambda_tilde(p, 1.6, form)) for p, wt in zip(pts, w))
    assert np.max(np.abs(total)) < 1e-13 * np.max(scale)
    assert np.max(scale) > 1.0


def test_stress_coupling_mandel_contraction():
    rng = np.random.default_rng(7)
    r = rng.standard_normal(3)
    lam = coupling.stress_coupling(r, 1.7)
    m = coupling.stress_coupling_mandel(r, 1.7)
    np.testing.assert_allclose(m, m.T, atol=1e-16)
    a, b = rng.standard_normal((2, 3, 3))
    a, b = a + a.T, b + b.T
    full = np.einsum("ijkl,ij,kl->", lam, a, b)
    assert np.isclose(full, tensors.to_mandel(a) @ m @ tensors.to_mandel(b), rtol=1e-13)


# ------------------------------------------------------------------------------------ Eq. (A1) vs (A15)
def _split_parts(n, cl_over_ct, form):
    """Split Λ̃ = part1 + part2 with part2 ∝ α, using that Λ̃ is affine in α (two sound-velocity ratios)."""
    a1, a2 = _alpha(cl_over_ct), _alpha(3.0)
    l1 = coupling.lambda_tilde(n, cl_over_ct, form)
    l2 = coupling.lambda_tilde(n, 3.0, form)
    per_alpha = (l1 - l2) / (a1 - a2)
    return l1 - a1 * per_alpha, a1 * per_alpha


@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_a1_versus_a15_parts(cl_over_ct):
    """The exact relations behind points (1)–(4) under Eq. (A16) of [ZL]:

    * Λ̃^(2)_JL = 2α B and Λ̃^(2) = ½α B, so Λ̃^(2)_JL = 4 Λ̃^(2) (point (4)'s "extra 1/2" on top of the
      overall 1/2 of point (2));
    * Λ̃^(1)_JL = −2 (δ_jl − 3n_j n_l) δ_ik exactly, without the minor symmetries (point (1));
    * its symmetrization is −2 Λ̃^(1), i.e. Λ̃^(1) = −½ sym Λ̃^(1)_JL: the overall 1/2 of point (2) and the
      sign of point (3);
    * hence Λ̃ = −½ sym Λ̃^(1)_JL + ¼ Λ̃^(2)_JL, and Λ̃ ≠ ½ sym Λ̃_JL (no single factor relates them).
    """
    alpha = _alpha(cl_over_ct)
    for r in _random_points(8, n=8):
        n = r / np.linalg.norm(r)
        p1, p2 = _split_parts(n, cl_over_ct, "zhou-leggett")
        j1, j2 = _split_parts(n, cl_over_ct, "joffrin-levelut")
        np.testing.assert_allclose(p2, 0.5 * alpha * _bracket(n), atol=1e-12)
        np.testing.assert_allclose(j2, 2.0 * alpha * _bracket(n), atol=1e-12)
        np.testing.assert_allclose(j2, 4.0 * p2, atol=1e-12)
        np.testing.assert_allclose(j1, -2.0 * _dipole_part(n), atol=1e-12)
        np.testing.assert_allclose(p1, _sym(_dipole_part(n)), atol=1e-12)
        assert np.max(np.abs(j1 - j1.transpose(1, 0, 2, 3))) > 0.1
        assert np.max(np.abs(j1 - j1.transpose(0, 1, 3, 2))) > 0.1
        np.testing.assert_allclose(j1, j1.transpose(2, 3, 0, 1), atol=1e-12)  # major symmetry holds
        np.testing.assert_allclose(tensors.symmetrize4(j1), -2.0 * p1, atol=1e-12)
        full = coupling.lambda_tilde(n, cl_over_ct)
        np.testing.assert_allclose(full, -0.5 * tensors.symmetrize4(j1) + 0.25 * j2, atol=1e-12)
        jl_full = tensors.symmetrize4(coupling.lambda_tilde(n, cl_over_ct, "joffrin-levelut"))
        assert np.max(np.abs(full - 0.5 * jl_full)) > 0.1
        assert np.max(np.abs(full + 0.5 * jl_full)) > 0.1


# ------------------------------------------------------------------------------------ displacement table
@pytest.mark.parametrize("form", coupling.FORMS)
@pytest.mark.parametrize("n0", [1, 2, 3, 4])
def test_displacement_table_matches_reference(n0, form):
    fast = coupling.displacement_table(n0, 1.6, form)
    slow = coupling.displacement_table_reference(n0, 1.6, form)
    assert fast.shape == (2 * n0 - 1,) * 3 + (6, 6)
    np.testing.assert_allclose(fast, slow, rtol=1e-13, atol=1e-13 * np.max(np.abs(slow), initial=1.0))
    c = n0 - 1
    assert np.all(fast[c, c, c] == 0.0)


@pytest.mark.parametrize("form", coupling.FORMS)
def test_displacement_table_jl_uses_minor_projection(form):
    table = coupling.displacement_table(2, 1.6, form)
    d = np.array([1.0, -1.0, 0.0])
    lam = coupling.stress_coupling(d, 1.6, form)
    np.testing.assert_allclose(table[2, 0, 1], tensors.to_mandel4(tensors.symmetrize4(lam)), atol=1e-15)


@pytest.mark.parametrize("form", coupling.FORMS)
@pytest.mark.parametrize("n0", [2, 3])
def test_displacement_table_matches_pair_couplings(n0, form):
    pos = coupling.lattice_positions(n0)
    assert pos.shape == (n0**3, 3)
    pairs = coupling.pair_couplings_reference(pos, 1.6, form)
    table = coupling.displacement_table(n0, 1.6, form)
    for s in range(len(pos)):
        for t in range(len(pos)):
            idx = tuple(pos[s] - pos[t] + n0 - 1)
            np.testing.assert_allclose(table[idx], pairs[s, t], atol=1e-15)
        np.testing.assert_array_equal(pairs[s, s], 0.0)
    # Λ^(ss') = Λ^(s's) in the Mandel form: pairs[s, t] == pairs[t, s]ᵀ == pairs[t, s]
    np.testing.assert_allclose(pairs, np.swapaxes(pairs, 0, 1), atol=1e-15)


# ------------------------------------------------------------------------------------ lattice sums (BRIEF §1b)
def _longitudinal_sums(n_side, direction, cl_over_ct=1.6):
    """Σ_{s'} q_i q_j q_k q_l Λ_ijkl(x_s − x_s') around the central block of an n_side³ cube (n_side odd)
    and of the inscribed ball |d| ≤ (n_side − 1)/2. ρ = c_t = L = 1."""
    n0 = (n_side + 1) // 2
    table = coupling.displacement_table(n0, cl_over_ct)
    e_l, _ = tensors.direction_strains(direction)
    per_site = np.einsum("a,xyzab,b->xyz", e_l, table, e_l)
    g = np.arange(-(n0 - 1), n0)
    radius = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    return float(per_site.sum()), float(per_site[radius <= n0 - 1].sum())


def test_lattice_sum_matches_brief_values():
    """BRIEF §1b: cube +0.0978 along [100], −0.0652 along [111]; sphere +0.113 along [100] (A15,
    c_l/c_t = 1.6). Interpreted as Σ_{s'} e_l·Λ·e_l with e_l = q⊗q, i.e. Σ q_i q_j q_k q_l Λ_ijkl.
    Checked at N0 = 25 against the printed digits (round-half tolerance)."""
    cube_100, sphere_100 = _longitudinal_sums(25, [1, 0, 0])
    cube_111, _ = _longitudinal_sums(25, [1, 1, 1])
    assert abs(cube_100 - 0.0978) <= 0.5e-4
    assert abs(cube_111 - (-0.0652)) <= 0.5e-4
    assert abs(sphere_100 - 0.113) <= 0.5e-3


def test_lattice_sum_converges_and_depends_on_shape():
    """The sum is (nearly) unchanged from N0 = 9 to 25 (cube to 0.5 %, the rough lattice ball to 2 %),
    while cube and sphere differ by ~15 %: a conditionally convergent, shape-dependent sum."""
    cube9, sphere9 = _longitudinal_sums(9, [1, 0, 0])
    cube25, sphere25 = _longitudinal_sums(25, [1, 0, 0])
    assert abs(cube9 - cube25) < 0.005 * abs(cube25)
    assert abs(sphere9 - sphere25) < 0.02 * abs(sphere25)
    assert abs(sphere25 - cube25) > 0.1 * abs(cube25)


@pytest.mark.parametrize("n_side", [5, 9, 15])
def test_lattice_sum_is_pure_cubic_l4(n_side):
    """Λ̃ has zero spherical mean and the region has cubic symmetry, so the l = 0 part of
    S(q) = Σ q q q q Λ vanishes and only the cubic l = 4 harmonic x⁴+y⁴+z⁴ − 3/5 is left:
    S[111]/S[100] = −2/3 and S[110]/S[100] = −1/4 exactly, for cube and sphere alike."""
    c100, s100 = _longitudinal_sums(n_side, [1, 0, 0])
    c111, s111 = _longitudinal_sums(n_side, [1, 1, 1])
    c110, s110 = _longitudinal_sums(n_side, [1, 1, 0])
    for v100, v111, v110 in ((c100, c111, c110), (s100, s111, s110)):
        assert np.isclose(v111 / v100, -2.0 / 3.0, rtol=1e-10)
        assert np.isclose(v110 / v100, -0.25, rtol=1e-10)


# ------------------------------------------------------------------------------------ ΔΛ (Eq. 2.17)
def _fd_directional(fun, r, dr, h):
    return (-fun(r + 2 * h * dr) + 8 * fun(r + h * dr) - 8 * fun(r - h * dr) + fun(r - 2 * h * dr)) / (12 * h)


@pytest.mark.parametrize("form", coupling.FORMS)
@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_delta_lambda_is_derivative_of_stress_coupling(cl_over_ct, form):
    rng = np.random.default_rng(9)
    for r in _random_points(10, n=8):
        dr = rng.standard_normal(3)
        exact = coupling.delta_lambda(r, dr, cl_over_ct, form)
        fd = _fd_directional(lambda p: coupling.stress_coupling(p, cl_over_ct, form), r, dr, 1e-3 * np.linalg.norm(r))
        assert np.max(np.abs(exact - fd)) <= 1e-8 * np.max(np.abs(exact))


def test_delta_lambda_linear_and_radial():
    rng = np.random.default_rng(11)
    r, dr = rng.standard_normal((2, 3))
    np.testing.assert_allclose(coupling.delta_lambda(r, 2.5 * dr, 1.6), 2.5 * coupling.delta_lambda(r, dr, 1.6), rtol=1e-12)
    # a radial displacement only rescales |r|: ΔΛ = −3 Λ Δx / x
    x = np.linalg.norm(r)
    radial = 0.01 * r / x
    np.testing.assert_allclose(
        coupling.delta_lambda(r, radial, 1.6), -3 * coupling.stress_coupling(r, 1.6) * 0.01 / x, atol=1e-15
    )


@pytest.mark.parametrize("cl_over_ct", RATIOS)
def test_printed_eq_2_17_equals_delta_lambda(cl_over_ct):
    rng = np.random.default_rng(12)
    for r in _random_points(13, n=10):
        dr = rng.standard_normal(3) * rng.uniform(1e-3, 1.0)
        exact = coupling.delta_lambda(r, dr, cl_over_ct)
        printed = coupling.delta_lambda_eq217(r, dr, cl_over_ct)
        assert np.max(np.abs(printed - exact)) <= 1e-12 * np.max(np.abs(exact))


# ------------------------------------------------------------------------------------ dipole (Eq. 5.2, 5.3)
def test_dipole_coupling_formula():
    r = np.array([0.0, 0.0, 2.0])
    mu = coupling.dipole_coupling(r, epsilon=3.0)
    expected = np.diag([1.0, 1.0, -2.0]) / (8 * np.pi * 3.0 * 8.0)
    np.testing.assert_allclose(mu, expected, rtol=1e-14)
    rng = np.random.default_rng(14)
    p = rng.standard_normal(3)
    np.testing.assert_allclose(coupling.dipole_coupling(-p, 2.0), coupling.dipole_coupling(p, 2.0))
    assert np.isclose(np.trace(coupling.dipole_coupling(p, 2.0)), 0.0, atol=1e-15)


def test_delta_dipole_is_derivative_of_dipole():
    rng = np.random.default_rng(15)
    for r in _random_points(16, n=10):
        dr = rng.standard_normal(3)
        exact = coupling.delta_dipole_coupling(r, dr, 1.9)
        fd = _fd_directional(lambda p: coupling.dipole_coupling(p, 1.9), r, dr, 1e-3 * np.linalg.norm(r))
        assert np.max(np.abs(exact - fd)) <= 1e-8 * np.max(np.abs(exact))


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, field",
    [
        pytest.param(lambda: coupling.stress_coupling([1.0, 0, 0], 1.0), "cl_over_ct", id="ratio<sqrt43"),
        pytest.param(lambda: coupling.stress_coupling([1.0, 0, 0], np.sqrt(4 / 3)), "cl_over_ct", id="ratio=sqrt43"),
        pytest.param(lambda: coupling.stress_coupling([1.0, 0, 0], float("nan")), "cl_over_ct", id="ratio-nan"),
        pytest.param(lambda: coupling.stress_coupling([1.0, 0, 0], float("inf")), "cl_over_ct", id="ratio-inf"),
        pytest.param(lambda: coupling.stress_coupling([0.0, 0, 0], 1.6), "r", id="r=0"),
        pytest.param(lambda: coupling.stress_coupling([np.nan, 0, 0], 1.6), "r", id="r-nan"),
        pytest.param(lambda: coupling.stress_coupling([1.0, 0], 1.6), "r", id="r-shape"),
        pytest.param(lambda: coupling.stress_coupling([1.0, 0, 0], 1.6, form="jl"), "form", id="form"),
        pytest.param(lambda: coupling.lambda_tilde([0.0, 0, 0], 1.6), "n", id="n=0"),
        pytest.param(lambda: coupling.displacement_table(0, 1.6), "n0", id="n0=0"),
        pytest.param(lambda: coupling.displacement_table(2, 1.6, form="x"), "form", id="table-form"),
        pytest.param(lambda: coupling.displacement_table(2, 0.5), "cl_over_ct", id="table-ratio"),
        pytest.param(lambda: coupling.delta_lambda([1.0, 0, 0], [0, 0.1, 0], 1.6, form="x"), "form", id="dl-form"),
        pytest.param(lambda: coupling.dipole_coupling([1.0, 0, 0], 0.0), "epsilon", id="eps=0"),
        pytest.param(lambda: coupling.delta_dipole_coupling([1.0, 0, 0], [0, 1.0, 0], np.nan), "epsilon", id="eps-nan"),
    ],
)
def test_bad_input_raises_input_error_naming_field(call, field):
    with pytest.raises(InputError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{field} = ")
    assert "\n" not in msg
