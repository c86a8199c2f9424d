"""Tests of blocksim.theory.decomposition: the absorption split of Eq. (3.4)–(3.7)."""

import numpy as np
import pytest

from blocksim import spectra
from blocksim.theory import decomposition
from blocksim.model.tensors import random_rotation


def superblock(g, seed=3, n0=2, n=2):
    rng = np.random.default_rng(seed)
    nb = n0**3
    e = np.zeros((nb, n))
    e[:, 1:] = np.sort(rng.uniform(0.5, 1.5, (nb, n - 1)), axis=1)
    s = rng.normal(size=(nb, 6, n, n))
    s = 0.5 * (s + np.swapaxes(s, -1, -2))
    return spectra.assemble_superblock(e, s, random_rotation(rng, nb), n0, g, 1.6)


OMEGA = np.linspace(0.3, 3.2, 60)
TEMPS = [0.0, 0.4]


def test_zero_coupling_interaction_and_delta_lambda_vanish():
    sb = superblock(0.0)
    d = decomposition.decompose(sb, spectra.solve(sb, "perturbative"), OMEGA, TEMPS, width=0.05)
    for name in ("l", "t"):
        np.testing.assert_allclose(d[name]["super"], d[name]["e1"], rtol=1e-12, atol=1e-14)
        assert np.all(d[name]["interaction_num"] == 0) or np.abs(d[name]["interaction_num"]).max() < 1e-12
        assert np.all(d[name]["e2_num"] == 0)
        assert np.all(d[name]["e1"] >= 0)


def test_delta_lambda_term_scales_as_g_squared_and_sits_at_pair_energies():
    d1 = decomposition.decompose(superblock(1e-3), spectra.solve(superblock(1e-3)), OMEGA, [0.0], width=0.05)
    d2 = decomposition.decompose(superblock(2e-3), spectra.solve(superblock(2e-3)), OMEGA, [0.0], width=0.05)
    for name in ("l", "t"):
        a, b = d1[name]["e2_num"].sum(), d2[name]["e2_num"].sum()
        assert a > 0
        np.testing.assert_allclose(b / a, 4.0, rtol=1e-9)
    # pair energies lie in [1, 3]: the spectral weight below 0.8 is only line tails
    low = OMEGA < 0.8
    assert d1["l"]["e2_num"][0, low].max() < 0.05 * d1["l"]["e2_num"].max()


def test_interaction_part_is_linear_in_g_at_weak_coupling():
    vals = []
    for g in (1e-4, 2e-4):
        sb = superblock(g)
        d = decomposition.decompose(sb, spectra.solve(sb), OMEGA, [0.0], width=0.2)
        vals.append(d["l"]["interaction_num"])
    # band-integrated response, dominated by the first-order amplitude change 2u·δ ∝ g
    ratio = np.abs(vals[1]).sum() / np.abs(vals[0]).sum()
    assert ratio == pytest.approx(2.0, rel=0.05)


def test_analytic_terms_are_finite_and_vanish_at_zero_g():
    sb = superblock(1e-3)
    d = decomposition.decompose(sb, spectra.solve(sb), OMEGA, TEMPS, width=0.05, k_constant=0.5)
    for name in ("l", "t"):
        for key in ("e2_eq35", "e3_eq36", "v_eq37"):
            assert d[name][key].shape == (2, len(OMEGA))
            assert np.all(np.isfinite(d[name][key]))
    sb0 = superblock(0.0)
    d0 = decomposition.decompose(sb0, spectra.solve(sb0), OMEGA, TEMPS, width=0.05)
    assert np.all(d0["l"]["v_eq37"] == 0)
