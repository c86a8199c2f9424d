"""Tests for blocksim.model.tensors: Mandel notation, the 6×6 rotation representation, random SO(3),
the cubic group and the isotropic projection (Eq. 2.12 of [ZL])."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from blocksim.model import tensors
from blocksim.errors import InputError


def _random_symmetric(rng, size=None):
    shape = (3, 3) if size is None else (size, 3, 3)
    a = rng.standard_normal(shape)
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _random_minor_symmetric4(rng):
    """Random C_ijkl with C_ijkl = C_jikl = C_ijlk but no major symmetry."""
    c = rng.standard_normal((3, 3, 3, 3))
    return tensors.symmetrize4(c)


def _rotate4(r, c):
    return np.einsum("ia,jb,kc,ld,abcd->ijkl", r, r, r, r, c)


def _icosahedral_group() -> np.ndarray:
    """The 60 proper rotations of the icosahedron, by closure of a 5-fold and a 3-fold generator.

    No rank ≤ 5 tensor component with l = 1..5 is invariant under this group, so its average of a
    rank-4 tensor equals the exact SO(3) average.
    """
    phi = (1.0 + np.sqrt(5.0)) / 2.0

    def axis_angle(axis, angle):
        u = np.asarray(axis, float) / np.linalg.norm(axis)
        k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
        return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k

    gens = [axis_angle([0.0, 1.0, phi], 2 * np.pi / 5), axis_angle([1.0, 1.0, 1.0], 2 * np.pi / 3)]
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                p = g @ h
                if not any(np.allclose(p, q, atol=1e-9) for q in group):
                    group.append(p)
                    new.append(p)
        frontier = new
    return np.array(group)


# ------------------------------------------------------------------------------------ Mandel
def test_mandel_order_and_weights():
    t = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    s2 = np.sqrt(2.0)
    np.testing.assert_allclose(tensors.to_mandel(t), [1, 2, 3, 4 * s2, 5 * s2, 6 * s2], rtol=1e-15)


def test_mandel_vector_round_trip():
    rng = np.random.default_rng(0)
    t = _random_symmetric(rng, size=20)
    np.testing.assert_allclose(tensors.from_mandel(tensors.to_mandel(t)), t, atol=1e-14)
    v = rng.standard_normal((20, 6))
    np.testing.assert_allclose(tensors.to_mandel(tensors.from_mandel(v)), v, atol=1e-14)


def test_mandel4_round_trip():
    rng = np.random.default_rng(1)
    c = _random_minor_symmetric4(rng)
    np.testing.assert_allclose(tensors.from_mandel4(tensors.to_mandel4(c)), c, atol=1e-14)
    m = rng.standard_normal((6, 6))
    np.testing.assert_allclose(tensors.to_mandel4(tensors.from_mandel4(m)), m, atol=1e-14)


def test_double_contraction_is_dot_product():
    rng = np.random.default_rng(2)
    t, e = _random_symmetric(rng), _random_symmetric(rng)
    assert np.isclose(np.sum(t * e), tensors.to_mandel(t) @ tensors.to_mandel(e), rtol=1e-14)
    c = _random_minor_symmetric4(rng)
    full = np.einsum("ijkl,ij,kl->", c, t, e)
    assert np.isclose(full, tensors.to_mandel(t) @ tensors.to_mandel4(c) @ tensors.to_mandel(e), rtol=1e-13)


def test_to_mandel4_projects_onto_minor_symmetries():
    rng = np.random.default_rng(3)
    c = rng.standard_normal((3, 3, 3, 3))
    t, e = _random_symmetric(rng), _random_symmetric(rng)
    # Contracting with symmetric tensors only sees the minor-symmetric part.
    full = np.einsum("ijkl,ij,kl->", c, t, e)
    assert np.isclose(full, tensors.to_mandel(t) @ tensors.to_mandel4(c) @ tensors.to_mandel(e), rtol=1e-13)


# ------------------------------------------------------------------------------------ rotations
def test_rotation_mandel_is_orthogonal():
    rng = np.random.default_rng(4)
    q = tensors.rotation_mandel(tensors.random_rotation(rng, size=10))
    for qi in q:
        np.testing.assert_allclose(qi @ qi.T, np.eye(6), atol=1e-13)
        assert np.isclose(np.linalg.det(qi), 1.0, atol=1e-12)


def test_rotation_mandel_matches_direct_rotation():
    rng = np.random.default_rng(5)
    for _ in range(10):
        r = tensors.random_rotation(rng)
        t = _random_symmetric(rng)
        np.testing.assert_allclose(
            tensors.rotation_mandel(r) @ tensors.to_mandel(t), tensors.to_mandel(r @ t @ r.T), atol=1e-13
        )


def test_rotation_mandel_is_homomorphism():
    rng = np.random.default_rng(6)
    r1, r2 = tensors.random_rotation(rng, size=2)
    np.testing.assert_allclose(
        tensors.rotation_mandel(r1 @ r2),
        tensors.rotation_mandel(r1) @ tensors.rotation_mandel(r2),
        atol=1e-13,
    )
    np.testing.assert_allclose(tensors.rotation_mandel(np.eye(3)), np.eye(6), atol=0)


def test_rotation_mandel_on_four_index_tensor():
    rng = np.random.default_rng(7)
    r = tensors.random_rotation(rng)
    c = _random_minor_symmetric4(rng)
    q = tensors.rotation_mandel(r)
    np.testing.assert_allclose(q @ tensors.to_mandel4(c) @ q.T, tensors.to_mandel4(_rotate4(r, c)), atol=1e-12)


@pytest.mark.parametrize("chi_l, chi_t", [pytest.param(3.0, 1.0, id="generic"), pytest.param(-2.0, -0.7, id="negative")])
def test_isotropic_tensor_is_rotation_invariant(chi_l, chi_t):
    rng = np.random.default_rng(8)
    c = tensors.isotropic_tensor(chi_l, chi_t)
    for r in tensors.random_rotation(rng, size=5):
        q = tensors.rotation_mandel(r)
        np.testing.assert_allclose(q @ c @ q.T, c, atol=1e-13)


def test_isotropic_tensor_matches_eq_2_12():
    chi_l, chi_t = 2.5, 0.8
    d = np.eye(3)
    c = (chi_l - 2 * chi_t) * np.einsum("ij,kl->ijkl", d, d) + chi_t * (
        np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d)
    )
    np.testing.assert_allclose(tensors.isotropic_tensor(chi_l, chi_t), tensors.to_mandel4(c), atol=1e-15)


def test_random_rotation_in_so3():
    rng = np.random.default_rng(9)
    r = tensors.random_rotation(rng, size=200)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-13)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-13)
    assert tensors.random_rotation(rng).shape == (3, 3)


def test_random_rotation_is_haar():
    """Mean of R is 0, E[R_ij R_kl] = δ_ik δ_jl / 3, and the rotation angle has the Haar density
    p(θ) = (1 − cos θ)/π, i.e. CDF (θ − sin θ)/π, so E[tr R] = 0 and E[(tr R)²] = 1."""
    n = 20000
    rng = np.random.default_rng(10)
    r = tensors.random_rotation(rng, size=n)
    se = np.sqrt(1.0 / 3.0 / n)
    assert np.all(np.abs(r.mean(axis=0)) < 3 * se)
    second = np.einsum("nij,nkl->ijkl", r, r) / n
    expected = np.einsum("ik,jl->ijkl", np.eye(3), np.eye(3)) / 3.0
    # Var(R_ij R_kl) ≤ 1/5 for Haar; use that as a bound on the standard error.
    assert np.max(np.abs(second - expected)) < 4 * np.sqrt(0.2 / n)
    tr = np.trace(r, axis1=1, axis2=2)
    assert abs(tr.mean()) < 3 * tr.std() / np.sqrt(n)
    assert abs(np.mean(tr**2) - 1.0) < 3 * np.std(tr**2) / np.sqrt(n)
    theta = np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0))
    ks = stats.kstest(theta, lambda x: (x - np.sin(x)) / np.pi)
    assert ks.pvalue > 1e-3


def test_random_rotation_reproducible_with_generator():
    a = tensors.random_rotation(np.random.default_rng(11), size=3)
    b = tensors.random_rotation(np.random.default_rng(11), size=3)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ cubic group
def test_cubic_rotations_form_the_proper_cube_group():
    g = tensors.cubic_rotations()
    assert g.shape == (24, 3, 3)
    np.testing.assert_allclose(np.linalg.det(g), 1.0)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", g, g), np.broadcast_to(np.eye(3), g.shape))
    keys = {tuple(m.astype(int).ravel()) for m in g}
    assert len(keys) == 24
    assert tuple(np.eye(3, dtype=int).ravel()) in keys
    for a, b in itertools.product(g, g):
        assert tuple((a @ b).astype(int).ravel()) in keys
    for a in g:
        assert tuple(a.T.astype(int).ravel()) in keys


def test_cubic_average_keeps_anisotropy_icosahedral_group_has_60():
    """Sanity of the helper used below: a cubic average leaves the l = 4 part, an icosahedral one does not."""
    rng = np.random.default_rng(12)
    c = tensors.to_mandel4(_random_minor_symmetric4(rng))
    qc = tensors.rotation_mandel(tensors.cubic_rotations())
    avg_cubic = np.mean(qc @ c @ np.swapaxes(qc, -1, -2), axis=0)
    assert tensors.isotropic_projection(avg_cubic)[2] > 1e-3
    ico = _icosahedral_group()
    assert len(ico) == 60


# ------------------------------------------------------------------------------------ isotropic projection
@pytest.mark.parametrize("chi_l, chi_t", [(3.0, 1.0), (1.0, 0.75), (-1.7, -0.4), (0.0, 0.0)])
def test_isotropic_projection_recovers_isotropic_tensor(chi_l, chi_t):
    m = tensors.isotropic_tensor(chi_l, chi_t)
    for c in (m, tensors.from_mandel4(m)):
        fit_l, fit_t, residual = tensors.isotropic_projection(c)
        assert np.isclose(fit_l, chi_l, atol=1e-14)
        assert np.isclose(fit_t, chi_t, atol=1e-14)
        assert residual < 1e-14


def test_rotation_average_is_isotropic():
    """Average of Q C Qᵀ over the icosahedral group (= the exact SO(3) average for rank 4) is isotropic
    with the same (χ_l, χ_t) as the projection of C itself."""
    rng = np.random.default_rng(13)
    c = tensors.to_mandel4(_random_minor_symmetric4(rng))
    chi_l, chi_t, residual = tensors.isotropic_projection(c)
    assert residual > 0.3
    q = tensors.rotation_mandel(_icosahedral_group())
    avg = np.mean(q @ c @ np.swapaxes(q, -1, -2), axis=0)
    avg_l, avg_t, avg_res = tensors.isotropic_projection(avg)
    assert avg_res < 1e-13
    assert np.isclose(avg_l, chi_l, atol=1e-13)
    assert np.isclose(avg_t, chi_t, atol=1e-13)
    np.testing.assert_allclose(avg, tensors.isotropic_tensor(chi_l, chi_t), atol=1e-13)


def test_haar_average_approaches_isotropic():
    rng = np.random.default_rng(14)
    c = tensors.to_mandel4(_random_minor_symmetric4(rng))
    q = tensors.rotation_mandel(tensors.random_rotation(rng, size=4000))
    avg = np.mean(q @ c @ np.swapaxes(q, -1, -2), axis=0)
    _, _, res0 = tensors.isotropic_projection(c)
    _, _, res = tensors.isotropic_projection(avg)
    assert res < 0.1 * res0


# ------------------------------------------------------------------------------------ directions
def test_direction_strains_along_z():
    rng = np.random.default_rng(15)
    c4 = _random_minor_symmetric4(rng)
    c4 = 0.5 * (c4 + np.transpose(c4, (2, 3, 0, 1)))
    m = tensors.to_mandel4(c4)
    e_l, e_t = tensors.direction_strains([0, 0, 1], [1, 0, 0])
    assert np.isclose(e_l @ m @ e_l, c4[2, 2, 2, 2], rtol=1e-14)
    assert np.isclose(e_t @ m @ e_t, c4[0, 2, 0, 2], rtol=1e-14)


def test_direction_strains_of_isotropic_tensor():
    m = tensors.isotropic_tensor(2.0, 0.7)
    rng = np.random.default_rng(16)
    for _ in range(5):
        q = rng.standard_normal(3)
        e_l, e_t = tensors.direction_strains(q)
        assert np.isclose(e_l @ m @ e_l, 2.0, rtol=1e-13)
        assert np.isclose(e_t @ m @ e_t, 0.7, rtol=1e-13)
        # the default polarization is perpendicular to q
        t = tensors.from_mandel(e_t)
        assert np.isclose(np.trace(t), 0.0, atol=1e-14)


@pytest.mark.parametrize(
    "q, p, field",
    [
        pytest.param([0, 0, 0], None, "q", id="q=0"),
        pytest.param([0, 0, np.nan], None, "q", id="q-nan"),
        pytest.param([0, 0, 1], [0, 0, 2], "p", id="p-parallel"),
        pytest.param([1, 1, 0], [1, 1], "p", id="p-shape"),
    ],
)
def test_direction_strains_bad_input(q, p, field):
    with pytest.raises(InputError, match=rf"^{field} = .*must"):
        tensors.direction_strains(q, p)


# --------------------------------------------------------------------------------------------
# Powder average and named directions
# --------------------------------------------------------------------------------------------
def test_powder_lt_equals_isotropic_projection_and_icosahedral_average():
    """Three routes to the orientation average: powder_lt, the least-squares isotropic fit, and the
    exact icosahedral 5-design quadrature of e_l·C·e_l and the polarization-summed e_t·C·e_t."""
    from blocksim.response import powder_directions

    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    c = a @ a.T
    chi_l, chi_t = tensors.powder_lt(c)
    ref_l, ref_t, _ = tensors.isotropic_projection(c)
    assert chi_l == pytest.approx(ref_l, rel=1e-13)
    assert chi_t == pytest.approx(ref_t, rel=1e-13)
    acc_l = acc_t = 0.0
    dirs = powder_directions("icosahedron")
    for q in dirs:
        p1 = np.linalg.svd(q[None, :])[2][1]
        p2 = np.cross(q, p1)
        e_l, e_t1 = tensors.direction_strains(q, p1)
        _, e_t2 = tensors.direction_strains(q, p2)
        acc_l += e_l @ c @ e_l
        acc_t += 0.5 * (e_t1 @ c @ e_t1 + e_t2 @ c @ e_t2)
    assert acc_l / len(dirs) == pytest.approx(chi_l, rel=1e-12)
    assert acc_t / len(dirs) == pytest.approx(chi_t, rel=1e-12)
    # batched
    many = np.stack([c, 2 * c])
    bl, bt = tensors.powder_lt(many)
    assert np.allclose(bl, [chi_l, 2 * chi_l]) and np.allclose(bt, [chi_t, 2 * chi_t])


def test_direction_vectors():
    e_l, e_t = tensors.direction_vectors(["100", "110:001"])
    assert np.allclose(e_l[0], [1, 0, 0, 0, 0, 0])
    assert np.allclose(e_t[0] @ e_t[0], 0.5)  # ‖(qp + pq)/2‖² = 1/2
    assert np.allclose(e_t[1], [0, 0, 0, 0.5, 0.5, 0])  # q = (1,1,0)/√2, p = z → √2·(yz, xz) = 1/2
    with pytest.raises(InputError, match="direction = '11'"):
        tensors.direction_vectors(["11"])

