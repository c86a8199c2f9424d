"""Tests of blocksim.spectra.spectrum: the solver output — transitions (sum rules) and truncation."""

import numpy as np
import pytest

from blocksim import spectra
from blocksim.errors import InputError

from spectra_cases import superblock


@pytest.mark.parametrize("method", ["sector", "exact"])
def test_sum_rule_for_exact_solvers(method):
    sb = superblock(4, 2, 0.08)
    spec = spectra.solve(sb, method, max_excitations=sb.n_blocks if method == "sector" else None)
    t_full = spec.stress_block(np.arange(len(spec.energies)))  # [6, K, K]
    for a in range(6):
        t2 = (t_full[a] @ t_full[a])[0, 0]
        np.testing.assert_allclose(np.sum(spec.amp0[1:, a] ** 2), t2 - t_full[a, 0, 0] ** 2, rtol=1e-10)


def test_truncate_returns_symmetric_block_with_ground_at_zero():
    sb = superblock(9, 3, 0.01)
    for method in ("perturbative", "sector", "exact"):
        spec = spectra.solve(sb, method)
        e, st, diag = spec.truncate(4)
        assert e[0] == 0 and np.all(np.diff(e) >= 0)
        np.testing.assert_allclose(st, np.swapaxes(st, -1, -2))
        assert 0 < diag["weight_kept"] <= 1
        np.testing.assert_allclose(st[:, 0, 1:], spec.amp0[1:4].T)


def test_truncation_of_perturbative_matches_sector_at_weak_coupling():
    sb = superblock(10, 2, 1e-4)
    e1, s1, _ = spectra.solve(sb, "perturbative").truncate(4)
    e2, s2, _ = spectra.solve(sb, "sector").truncate(4)
    np.testing.assert_allclose(e1, e2, atol=1e-6)
    np.testing.assert_allclose(s1**2, s2**2, atol=1e-3 * np.abs(s2**2).max())


def test_window_truncation_keeps_levels_nearest_the_probe():
    sb = superblock(9, 3, 0.01)
    spec = spectra.solve(sb, "perturbative")
    centre = float(np.median(spec.energies[1:]))
    e, st, diag = spec.truncate(4, centre)
    assert e[0] == 0 and np.all(np.diff(e) > 0)
    dist = np.abs(spec.energies[1:] - centre)
    assert np.max(np.abs(e[1:] - centre)) <= np.sort(dist)[2] + 1e-15
    idx = [0] + [int(np.nonzero(spec.energies == x)[0][0]) for x in e[1:]]
    np.testing.assert_allclose(st[:, 0, 1:], spec.amp0[idx[1:]].T)
    excluded = sorted(set(spec.energies[1:]) - set(e[1:]))
    assert diag["lowest_excluded_energy"] == excluded[0]
    with pytest.raises(InputError, match="window_center"):
        spec.truncate(4, -1.0)


def test_carrier_weights_and_rotate_rows_equal_their_matrix_products():
    """The numba sums of carrier_weights and rotate_rows (both solvers) = the matrix products they replace."""
    from blocksim.spectra.spectrum import carrier_weights, rotate_rows

    rng = np.random.default_rng(31)
    prob = rng.uniform(0, 1, (5, 4, 6))
    occ = np.zeros((5, 6, 3))
    occ[:, np.arange(6), np.arange(6) % 3] = 1.0
    single = np.array([True, True, False, False, True, False])
    single_rows = np.broadcast_to(single, (5, 6))
    want = prob @ (occ * single[:, None])
    np.testing.assert_allclose(carrier_weights(prob, occ, single_rows), want, rtol=1e-14)
    # a state with no single component keeps the weights of all its nodes
    prob[2, 1, single] = 0.0
    got = carrier_weights(prob, occ, single_rows)
    np.testing.assert_allclose(got[2, 1], prob[2, 1] @ occ[2], rtol=1e-14)
    np.testing.assert_allclose(got[2, 0], prob[2, 0] @ (occ[2] * single[:, None]), rtol=1e-14)
    np.testing.assert_array_equal(carrier_weights(prob[3], occ[3], single), got[3])  # 2-D call = one row of 3-D
    vec_t, amp = rng.normal(size=(7, 4, 5)), rng.normal(size=(7, 5, 6))
    np.testing.assert_allclose(rotate_rows(vec_t, amp, np.empty((7, 4, 6))), vec_t @ amp, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_eigh_pair_agrees_with_lapack(n):
    """spectrum.eigh_pair (Jacobi for n = 2, 3; LAPACK above): eigenvalues = numpy.linalg.eigh to rounding,
    AV = VΛ, VᵀV = 1, ascending; degenerate, diagonal, tiny and huge-ratio matrices included."""
    from blocksim.spectra.spectrum import eigh_pair

    rng = np.random.default_rng(60 + n)
    mats = [a + a.T for a in rng.normal(size=(300, n, n))]
    mats += [np.diag(rng.normal(size=n)), np.eye(n), np.zeros((n, n)), 1e-12 * (mats[0]), 1e12 * mats[1]]
    near = np.eye(n)
    near[1, 0] = near[0, 1] = 1e-300
    mats.append(near)
    wide = np.diag(np.geomspace(1e-9, 1e9, n))
    wide[-1, 0] = wide[0, -1] = 1e-3
    mats.append(wide)
    for a in mats:
        w, v = eigh_pair(a)
        scale = max(np.abs(a).max(), 1e-300)
        np.testing.assert_allclose(w, np.linalg.eigh(a)[0], rtol=0, atol=1e-14 * scale)
        assert np.all(np.diff(w) >= 0)
        np.testing.assert_allclose(a @ v, v * w, rtol=0, atol=1e-14 * scale)
        np.testing.assert_allclose(v.T @ v, np.eye(n), rtol=0, atol=1e-14)
