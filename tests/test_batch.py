"""Tests of blocksim.spectra.batch: the batched solver of small super blocks against the per-super-block path.

The batched kernel must give the per-super-block results bit for bit (common path: same arithmetic;
dressed and resonant super blocks: the per-super-block path itself), for any thread count, and the
RG step must write the same file with ``solver.batched`` on and off.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from blocksim import rg
from blocksim.config import load_config
from blocksim.model.blocks import make_blocks
from blocksim.model.coupling import displacement_table
from blocksim.model.tensors import random_rotation
from blocksim.spectra import batch

FIELDS = ("energies", "stress", "weight_kept", "lowest_excluded_energy", "double_in_window", "lead",
          "excitations", "excitation_offsets", "omega", "amp", "population", "temperatures",
          "transition_offsets")


def _members(seed, p, n0, n, lo=0.1, hi=1.5):
    rng = np.random.default_rng(seed)
    nb = n0**3
    e = np.zeros((p, nb, n))
    e[..., 1:] = np.sort(rng.uniform(lo, hi, (p, nb, n - 1)), axis=-1)
    s = rng.normal(size=(p, nb, 6, n, n))
    s = 0.5 * (s + np.swapaxes(s, -1, -2))
    return e, s, random_rotation(rng, p * nb).reshape(p, nb, 3, 3)


def _both(seed, p, n0, n, g, **kw):
    e, s, r = _members(seed, p, n0, n)
    table = displacement_table(n0, 1.6)
    args = (e, s, r, n0, g, 1.6, "zhou-leggett", table)
    kw = dict(dict(resonance_threshold=0.1, n_keep=3, temperatures=[0.0, 0.05, 0.1]), **kw)
    return batch.solve_batch(*args, **kw), batch.solve_batch_reference(*args, **kw)


def _assert_identical(fast, slow):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name, strict=True)
    assert fast.diagnostics.keys() == slow.diagnostics.keys()
    for key in fast.diagnostics:
        np.testing.assert_array_equal(fast.diagnostics[key], slow.diagnostics[key], err_msg=key)
    assert fast.n_resonance_warnings == slow.n_resonance_warnings


CASES = [
    pytest.param(2, 3, 1e-3, None, id="n0_2-n3-weak"),
    pytest.param(2, 3, 2e-2, None, id="n0_2-n3-strong"),
    pytest.param(2, 4, 1e-2, None, id="n0_2-n4-strong"),
    pytest.param(2, 2, 1e-3, None, id="n0_2-n2"),
    pytest.param(2, 4, 5e-4, None, id="n0_2-n4"),
    pytest.param(2, 3, 3e-3, 0.9, id="n0_2-n3-window"),
    pytest.param(3, 3, 5e-4, None, id="n0_3-n3"),
]


@pytest.mark.parametrize("n0, n, g, window", CASES)
def test_batch_is_bit_identical_to_the_per_superblock_path(n0, n, g, window):
    p = 40 if n0 == 2 else 12
    fast, slow = _both(7, p, n0, n, g, window_center=window)
    _assert_identical(fast, slow)
    assert not slow.fallback_reason.any()
    assert fast.fallback_fraction < 0.2


def test_dressed_and_resonant_superblocks_are_solved_in_the_batch():
    """Dressed members, resonant single–single clusters and single–double resonances stay on the batch path."""
    fast, slow = _both(3, 60, 2, 3, 2e-2)
    _assert_identical(fast, slow)
    batched = fast.fallback_reason == 0
    assert batched.mean() > 0.9
    for key in ("n_dressed_members", "n_resonant_pairs", "n_resonant_single_double"):
        assert np.any(fast.diagnostics[key][batched] > 0), key
    assert np.any(fast.diagnostics["n_states"][batched] > 1 + 8 * 2)  # doubles in clusters


def test_strong_coupling_falls_back_and_stays_identical():
    """Beyond the kernel's full limits (clusters touching 9 or more members) the per-super-block path runs."""
    fast, slow = _both(4, 6, 3, 3, 0.3)
    _assert_identical(fast, slow)
    assert fast.fallback_reason.any()
    assert set(fast.fallback_reason.tolist()) <= set(range(len(batch.REASONS)))


@pytest.mark.parametrize("g, window", [(0.1, None), (0.3, None), (0.1, 0.9)])
def test_superblocks_beyond_the_default_limits_are_retried_in_the_batch(g, window):
    """Generic members at g = 0.1–0.3 overflow the default pair/double limits (most of them at N0 = 2):
    they are solved again by the kernels with the full limits, bit for bit the per-super-block path."""
    p = 24
    rng = np.random.default_rng(17)
    e, t = make_blocks(rng, p * 8, {"kind": "generic", "n": 3})
    r = random_rotation(rng, p * 8).reshape(p, 8, 3, 3)
    args = (e.reshape(p, 8, 3), t.reshape(p, 8, 6, 3, 3), r, 2, g, 1.6, "zhou-leggett", displacement_table(2, 1.6))
    kw = dict(n_keep=3, window_center=window, temperatures=[0.0, 0.02, 0.1])
    nb, ne = 8, 2
    n_ss, n_sd, n_dbl = batch._limits(nb, ne, False)
    fast, slow = batch.solve_batch(*args, **kw), batch.solve_batch_reference(*args, **kw)
    _assert_identical(fast, slow)
    beyond = ((fast.diagnostics["n_resonant_pairs"] > n_ss) | (fast.diagnostics["n_resonant_single_double"] > n_sd)
              | (fast.diagnostics["n_states"] - 1 - nb * ne > n_dbl))
    assert beyond.sum() >= p // 4  # the retry is exercised ...
    assert not fast.fallback_reason.any()  # ... and nothing is left to the per-super-block path


def test_kept_block_with_and_without_the_node_element_cache(monkeypatch):
    """Stage C reuses the node elements of a cluster's kept states; summing without the cache is identical."""
    e, s, r = _members(23, 30, 2, 3)
    table = displacement_table(2, 1.6)
    args = (e, s, r, 2, 0.05, 1.6, "zhou-leggett", table)
    kw = dict(resonance_threshold=0.1, n_keep=5, temperatures=[0.05])
    cached = batch.solve_batch(*args, **kw)
    monkeypatch.setattr(batch, "KEPT_CACHE_NODES", 0)
    plain = batch.solve_batch(*args, **kw)
    _assert_identical(cached, plain)
    assert np.any(cached.diagnostics["max_cluster_size"][cached.fallback_reason == 0] > 2)


def test_serial_and_parallel_kernels_agree():
    e, s, r = _members(11, 70, 2, 3)
    table = displacement_table(2, 1.6)
    kw = dict(resonance_threshold=0.1, n_keep=3, temperatures=[0.05])
    old = batch.PARALLEL_MIN_SUPERBLOCKS
    try:
        batch.PARALLEL_MIN_SUPERBLOCKS = 1
        par = batch.solve_batch(e, s, r, 2, 1e-3, 1.6, "zhou-leggett", table, **kw)
        batch.PARALLEL_MIN_SUPERBLOCKS = 10**9
        ser = batch.solve_batch(e, s, r, 2, 1e-3, 1.6, "zhou-leggett", table, **kw)
    finally:
        batch.PARALLEL_MIN_SUPERBLOCKS = old
    _assert_identical(par, ser)


def test_transitions_of_one_superblock_and_joined():
    fast, slow = _both(5, 6, 2, 3, 1e-3)
    for j in range(6):
        a, b = fast.transitions(j), slow.transitions(j)
        np.testing.assert_array_equal(a.population, b.population)
    joined = fast.transitions()
    assert joined.volume == 6.0 and joined.size == fast.transition_offsets[-1]
    np.testing.assert_array_equal(np.bincount(fast.segments()), np.diff(fast.transition_offsets))


def test_bad_inputs_are_refused():
    e, s, r = _members(1, 2, 2, 3)
    table = displacement_table(2, 1.6)
    with pytest.raises(ValueError, match="n0 = 5"):
        batch.solve_batch(e, s, r, 5, 1e-3, 1.6, "zhou-leggett", table)
    with pytest.raises(ValueError, match="rotations shape"):
        batch.solve_batch(e, s, r[:, :4], 2, 1e-3, 1.6, "zhou-leggett", table)
    with pytest.raises(ValueError, match="window_center"):
        batch.solve_batch(e, s, r, 2, 1e-3, 1.6, "zhou-leggett", table, window_center=-1.0)


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("extra", [pytest.param([], id="lowest"),
                                   pytest.param(["rg.truncation=window", "rg.window_center=0.5"], id="window")])
def test_rg_run_is_identical_with_and_without_batching(tmp_path, extra):
    files = {}
    for batched in ("true", "false"):
        over = ["run.seed=3", "rg.steps=2", "rg.pool_size=4", "model.n=3", "model.coupling=0.02",
                "run.progress=none", f"solver.batched={batched}", *extra]
        files[batched] = _datasets(rg.run(load_config({}, over), tmp_path / f"b_{batched}.h5"))
    a, b = files["true"], files["false"]
    assert a.keys() == b.keys()
    for name in a:
        if np.asarray(a[name]).dtype.kind in "fiub":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_rotate_operators_is_the_einsum_of_the_dressed_basis():
    """excited.rotate_operators (the dressed members' basis change, both solvers) = cᵀ·x·c by einsum."""
    from blocksim.spectra.excited import rotate_operators

    rng = np.random.default_rng(21)
    for n, k in ((2, 6), (3, 6), (4, 9)):
        c = np.linalg.eigh(rng.normal(size=(40, n, n)) + np.swapaxes(rng.normal(size=(40, n, n)), -1, -2))[1]
        x = rng.normal(size=(40, k, n, n))
        got = rotate_operators(c, x, np.empty(x.shape))
        np.testing.assert_allclose(got, np.einsum("dmi,damn,dnj->daij", c, x, c), rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(got[3], rotate_operators(c[3][None], x[3][None], np.empty((1, k, n, n)))[0])
