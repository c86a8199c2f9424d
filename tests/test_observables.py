"""Tests of blocksim.rg.observables: the ω grid, band weights, jackknife errors and the powder
average, each against an independent route."""

from __future__ import annotations

import numpy as np
import pytest

from blocksim.response import transitions_from_levels
from blocksim.rg import observables


def test_auto_frequency_grid_follows_spectrum():
    edges, centres = observables.frequency_grid([0.1, 0.2, 0.4], [0.1, 0.2, 0.4, 1.0, 3.0], 10)
    assert edges.shape == (11,) and centres.shape == (10,)
    assert edges[0] < 0.1 and edges[-1] > 2.9
    assert np.allclose(np.diff(np.log(edges)), np.log(edges[1] / edges[0]))
    assert np.allclose(centres, np.sqrt(edges[1:] * edges[:-1]))
    e2, _ = observables.frequency_grid([5.0], [5.0], 10, 0.01, 1.0)
    assert e2[0] == pytest.approx(0.01) and e2[-1] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Reductions, each against an independent route
# --------------------------------------------------------------------------------------------
def test_batched_transitions_match_per_block_transitions():
    """The pool's transitions (one batched call) are each block's own, block by block."""
    rng = np.random.default_rng(1)
    e = np.sort(rng.random((4, 3)), axis=1)
    e[:, 0] = 0.0
    s = rng.standard_normal((4, 6, 3, 3))
    s = s + np.swapaxes(s, 2, 3)
    pool = transitions_from_levels(e, s, [0.2])
    seg = np.repeat(np.arange(4), pool.size // 4)
    for p in range(4):
        tr = transitions_from_levels(e[p], s[p], [0.2])
        sel = seg == p
        assert np.array_equal(pool.omega[sel], tr.omega)
        assert np.array_equal(pool.amp[sel], tr.amp)
        assert np.array_equal(pool.population[0, sel], tr.population[0])


def test_band_weight_tensors_brute_force():
    rng = np.random.default_rng(2)
    m = 50
    omega = rng.uniform(-1, 2, m)
    amp = rng.standard_normal((m, 6))
    pop = rng.random(m)
    seg = np.sort(rng.integers(0, 3, m))
    band = (0.2, 1.5)
    w = observables.band_weight_tensors(omega, amp, pop, 0.3, seg, 3, band)
    ref = np.zeros((3, 6, 6))
    for k in range(m):
        if band[0] <= omega[k] < band[1]:
            ref[seg[k]] += -np.pi * pop[k] * (1 - np.exp(-omega[k] / 0.3)) * np.outer(amp[k], amp[k])
    assert np.allclose(w, ref, rtol=1e-12, atol=1e-14)


def test_band_weight_tensors_kernel_is_the_bincount_reference_bit_for_bit():
    """The one-pass numba sum equals the 21 np.bincount columns exactly (same products, same order)."""
    rng = np.random.default_rng(12)
    m = 4000
    omega = rng.uniform(-0.5, 3.0, m)
    amp = rng.standard_normal((m, 6)) * rng.uniform(0.01, 10.0, (m, 1))
    pop = rng.random(m)
    seg = rng.integers(0, 37, m)  # unsorted segments, some empty
    for band in ((0.2, 1.5), (5.0, 6.0)):
        w = observables.band_weight_tensors(omega, amp, pop, 0.05, seg, 40, band)
        ref = observables._band_weight_tensors_reference(omega, amp, pop, 0.05, seg, 40, band)
        assert np.array_equal(w, ref)
        assert np.array_equal(w, np.swapaxes(w, 1, 2))


def test_jackknife_ratio():
    rng = np.random.default_rng(3)
    wl = -rng.random(30) - 0.5
    wt = -rng.random(30) - 0.5
    r, err = observables.jackknife_ratio(wl, wt)
    assert r == pytest.approx(np.sqrt(wl.sum() / wt.sum()))
    loo = np.array([np.sqrt((wl.sum() - wl[i]) / (wt.sum() - wt[i])) for i in range(30)])
    assert err == pytest.approx(np.sqrt(29 / 30 * np.sum((loo - loo.mean()) ** 2)))
    # proportional samples: no scatter, no error
    r2, err2 = observables.jackknife_ratio(2.25 * wt, wt)
    assert r2 == pytest.approx(1.5) and err2 == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(observables.jackknife_ratio(wl[:1], wt[:1])[1])


def test_add_rows_at_is_np_add_at():
    """observables.add_rows_at (tree unit sums) = np.add.at bit for bit, repeated rows included."""
    from blocksim.rg.observables import add_rows_at

    rng = np.random.default_rng(41)
    rows = np.sort(rng.integers(0, 5, 300))
    w = rng.normal(size=(300, 6, 6)) * 10.0 ** rng.integers(-8, 8, (300, 1, 1))
    want = rng.normal(size=(5, 6, 6))
    got = want.copy()
    np.add.at(want, rows, w)
    add_rows_at(got, rows, w)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError):
        add_rows_at(got, np.array([5]), w[:1])


def test_level_band_weights_equal_band_weights_of_the_level_transitions():
    """observables.level_band_weights (the tree's pool weights, no transition arrays) = band_weight_tensors
    of transitions_from_levels, bit for bit; lines on the band edges included."""
    from blocksim.response import transitions_from_levels
    from blocksim.rg.observables import band_weight_tensors, level_band_weights

    rng = np.random.default_rng(42)
    e = np.sort(rng.uniform(0, 1.0, (60, 4)), axis=1)
    e[:, 0] = 0.0
    e[3, 2] = 0.3  # a line exactly on the lower band edge (0.3 − 0)
    st = rng.normal(size=(60, 6, 4, 4))
    st = st + np.swapaxes(st, -1, -2)
    band = (0.3, 0.7)
    tr = transitions_from_levels(e, st, [0.05])
    want = band_weight_tensors(tr.omega, tr.amp, tr.population[0], 0.05, np.repeat(np.arange(60), 12), 60, band)
    got = level_band_weights(e, st, 0.05, band)
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(got[:, 0, 0]) > 30
