"""First-order kept stress block and single–double resonances (blocksim.spectra.excited, issue 10 items 1–2).

Two routes to every number: literal Eq. (3.2) of [ZL] on the explicit ≤ 2-excitation sector matrix
(slow, obvious), and full exact diagonalization (the error must fall like g²).
"""

import numpy as np
import pytest

from blocksim import spectra
from blocksim.spectra import exact
from blocksim.model.tensors import random_rotation


def _members(rng, nb, n, lo=0.5, hi=1.5):
    e = np.zeros((nb, n))
    e[:, 1:] = np.sort(rng.uniform(lo, hi, (nb, n - 1)), axis=1)
    s = rng.normal(size=(nb, 6, n, n))
    return e, 0.5 * (s + np.swapaxes(s, -1, -2))


def _superblock(seed, n, g, n0=2):
    rng = np.random.default_rng(seed)
    e, s = _members(rng, n0**3, n)
    return spectra.assemble_superblock(e, s, random_rotation(rng, n0**3), n0, g, 1.6)


def _flat_of_state(spec, nl):
    """Flat single index s·(n−1) + m − 1 of each excited state (from its product label)."""
    out = []
    for row in spec.labels[1:]:
        (s,) = np.nonzero(row)[0]
        out.append(s * (nl - 1) + row[s] - 1)
    return np.array(out)


def _literal_first_order_block(sb):
    """⟨f̃1|T_tot|f̃2⟩ to first order from Eq. (3.2) applied literally in the ≤ 2-excitation sector.

    |f̃⟩ = |f⟩ + Σ_{x≠f} V_xf/(E_f − E_x)|x⟩ over every product state x of the sector (ground, singles,
    doubles; triples cannot reach a single through the one-body T_tot). Returns ``[6, ns, ns]``.
    """
    nb, nl = sb.n_blocks, sb.n_levels
    configs = exact.sector_configs(nb, nl, 2)
    h0, v, t = exact.sector_matrices(sb, configs)
    ns = nb * (nl - 1)
    singles = 1 + np.arange(ns)  # sector rows of the singles, in flat order
    de = h0[None, :] - h0[:, None]  # de[x, f] = E_f − E_x
    np.fill_diagonal(de, 1.0)
    c = v / de
    np.fill_diagonal(c, 0.0)
    tc = np.einsum("aik,kj->aij", t, c)
    block = t + tc + np.swapaxes(tc, 1, 2)
    return block[:, singles[:, None], singles[None, :]]


@pytest.mark.parametrize("n", [pytest.param(2, id="n2"), pytest.param(3, id="n3")])
def test_kept_block_equals_literal_eq_3_2(n):
    """Every excited–excited element equals literal first-order theory in the explicit sector."""
    sb = _superblock(31 + n, n, 1e-3)
    spec = spectra.solve(sb, "perturbative")
    d = spec.diagnostics
    assert d["n_resonant_pairs"] == 0 and d["n_resonant_single_double"] == 0 and d["n_dressed_members"] == 0
    k = len(spec.energies)
    block = spec.stress_block(np.arange(k))
    flat = _flat_of_state(spec, n)
    ref = _literal_first_order_block(sb)[:, flat[:, None], flat[None, :]]
    scale = np.abs(ref).max()
    np.testing.assert_allclose(block[:, 1:, 1:], ref, atol=1e-11 * scale, rtol=0)
    # the elements between excitations on different members are first order, not zero
    members = flat // (n - 1)
    off = members[:, None] != members[None, :]
    assert np.abs(block[:, 1:, 1:][:, off]).max() > 1e-4 * scale


def _matched_block_error(sb, n_keep):
    """Max |PT − ED| over every element of the kept stress block, ED signs fixed by the ground row."""
    pt = spectra.solve(sb, "perturbative")
    ex = spectra.solve(sb, "exact")
    lookup = {tuple(row): i for i, row in enumerate(ex.labels)}
    idx_pt = np.arange(n_keep)
    idx_ex = np.array([lookup[tuple(pt.labels[i])] for i in idx_pt])
    assert idx_ex[0] == 0
    a = pt.stress_block(idx_pt)
    b = ex.stress_block(idx_ex)
    sign = np.sign(np.einsum("ia,ia->i", pt.amp0[idx_pt], ex.amp0[idx_ex]))
    sign[0] = 1.0
    b = b * sign[None, :, None] * sign[None, None, :]
    return np.abs(a - b).max() / np.abs(pt.amp0[1:]).max(), pt.diagnostics


@pytest.mark.parametrize("n, seed", [pytest.param(2, 43, id="n2"), pytest.param(3, 48, id="n3")])
def test_kept_block_error_falls_like_g_squared(n, seed):
    """Against full ED every element of the truncated block (superblocks/stress) is O(g²).

    (Seeds without near-degenerate levels on different members: there ED mixes the two states
    through second-order couplings, which first-order theory cannot see.)
    """
    errs = []
    for g in (3e-3, 1e-3):
        err, diag = _matched_block_error(_superblock(seed, n, g), 6)
        assert diag["n_resonant_pairs"] == 0 and diag["n_resonant_single_double"] == 0
        errs.append(err)
    assert errs[0] / errs[1] > 3**1.7, f"error ratio {errs[0] / errs[1]:.2f} for g → g/3 (first order: 3)"


def _resonant_pair(g, e2=0.70):
    """Two neighbouring members: levels (0, 0.25, e2) and (0, 0.45, 0.95); 0.25 + 0.45 ≈ e2."""
    rng = np.random.default_rng(5)
    e = np.array([[0.0, 0.25, e2], [0.0, 0.45, 0.95]])
    s = rng.normal(size=(2, 6, 3, 3))
    s = 0.5 * (s + np.swapaxes(s, -1, -2))
    return spectra.assemble_superblock(e, s, random_rotation(rng, 2), 2, g, 1.6, positions=[[0, 0, 0], [0, 0, 1]])


def test_single_double_resonance_is_counted_and_split_like_ed():
    """|0,2⟩ (0.70) and |0,1; 1,1⟩ (0.25 + 0.45): ED shows two lines; so must the solver."""
    sb = _resonant_pair(0.02)
    pt = spectra.solve(sb, "perturbative")
    ex = spectra.solve(sb, "exact")
    assert pt.diagnostics["n_resonant_single_double"] == 1
    assert pt.diagnostics["n_resonant_pairs"] == 0
    near = lambda sp: np.nonzero(np.abs(sp.energies - 0.70) < 0.02)[0]
    i_pt, i_ex = near(pt), near(ex)
    assert len(i_pt) == len(i_ex) == 2
    split = ex.energies[i_ex[1]] - ex.energies[i_ex[0]]
    assert split > 1e-3  # a genuine splitting, far above the first-order accuracy
    np.testing.assert_allclose(pt.energies[i_pt], ex.energies[i_ex], atol=0.05 * split)
    # the weights: the total is conserved; how it is shared depends on the mixing angle, which
    # second-order level shifts move by O(g²)/V = O(g): the error must fall at least linearly
    errs = []
    for g in (0.02, 0.02 / 3):
        p, x = spectra.solve(_resonant_pair(g), "perturbative"), spectra.solve(_resonant_pair(g), "exact")
        w_pt, w_ex = np.sum(p.amp0[near(p)] ** 2, axis=1), np.sum(x.amp0[near(x)] ** 2, axis=1)
        assert len(w_pt) == 2 and abs(w_pt.sum() - w_ex.sum()) < 1e-2 * w_ex.sum()
        errs.append(np.abs(w_pt - w_ex).max() / w_ex.sum())
    assert errs[0] < 0.01 and errs[0] / errs[1] > 2.5, errs
    # the double's state is labelled with both members excited
    assert sorted(np.count_nonzero(pt.labels[i], axis=None) for i in i_pt) == [1, 2]


def test_single_double_resonance_leaves_the_other_lines_second_order():
    """Outside the resonance the lines keep an O(g²) error (the cluster treatment does not leak)."""
    errs = []
    for g in (0.02 / 3, 0.02):
        sb = _resonant_pair(g)
        pt = spectra.solve(sb, "perturbative")
        ex = spectra.solve(sb, "exact")
        lookup = {tuple(row): i for i, row in enumerate(ex.labels)}
        far = [i for i in range(1, len(pt.energies)) if abs(pt.energies[i] - 0.70) > 0.05]
        j = [lookup[tuple(pt.labels[i])] for i in far]
        errs.append(max(np.abs(pt.energies[far] - ex.energies[j]).max(),
                        np.abs(np.sum(pt.amp0[far] ** 2, 1) - np.sum(ex.amp0[j] ** 2, 1)).max() / 10))
    assert errs[1] / errs[0] > 3**1.7


def test_single_double_resonance_absent_for_two_level_members_and_far_levels():
    """n = 2 cannot host a single–double resonance; moving the level away removes it (threshold rule)."""
    sb = _superblock(7, 2, 0.02)
    assert spectra.solve(sb, "perturbative").diagnostics["n_resonant_single_double"] == 0
    far = spectra.solve(_resonant_pair(0.02, e2=0.85), "perturbative")
    assert far.diagnostics["n_resonant_single_double"] == 0


def test_double_amplitude_and_energy_equal_literal_eq_3_2():
    """First-order ⟨d̃|T_tot|0̃⟩ and E_d of a double (used inside clusters) against the explicit sector."""
    from blocksim.spectra import excited, perturbative

    sb = _superblock(48, 3, 1e-3)
    omega, amp, nres, ground_t, h, members = perturbative.perturbative_amplitudes(sb, 0.1)
    e_eff, s_eff, dressed, ux_eff, x_eff, u1 = members
    assert not dressed.any()
    table, g_table = perturbative._kernel_table(sb)
    ctx = excited.FirstOrderContext(e_eff, x_eff, u1, table, g_table, sb.positions, sb.n0, 0.1, ground_t)
    configs = exact.sector_configs(sb.n_blocks, 3, 2)
    h0, v, t = exact.sector_matrices(sb, configs)
    row = {tuple(c): i for i, c in enumerate(configs)}
    de = h0[None, :] - h0[:, None]
    np.fill_diagonal(de, 1.0)
    c = v / de
    np.fill_diagonal(c, 0.0)
    for s, k, u, p in [(0, 1, 1, 2), (2, 2, 7, 1), (3, 1, 4, 1), (0, 2, 6, 2)]:
        cfg = np.zeros(sb.n_blocks, dtype=int)
        cfg[s], cfg[u] = k, p
        d = row[tuple(cfg)]
        literal = t[:, d, :] @ c[:, 0] + c[:, d] @ t[:, :, 0].T
        got = excited.double_amplitude(ctx, s, k, u, p)
        np.testing.assert_allclose(got, literal, atol=1e-12 * np.abs(literal).max(), rtol=1e-10)
        assert np.abs(literal).max() > 1e-5  # first order, not zero
        e_first = h0[d] + v[d, d] - v[0, 0]
        np.testing.assert_allclose(excited.double_energy(ctx, omega, s, k, u, p), e_first, rtol=1e-12)


@pytest.mark.parametrize("n0, n, g", [pytest.param(2, 3, 0.05, id="N0=2"), pytest.param(3, 4, 0.02, id="N0=3")])
def test_kernels_match_numpy_reference(n0, n, g):
    """Numba kernels of the kept block and of the single–double search = their NumPy references."""
    from blocksim.spectra import excited, perturbative

    rng = np.random.default_rng(60 + n0)
    e, s = _members(rng, n0**3, n, 0.2, 1.2)
    sb = spectra.assemble_superblock(e, s, random_rotation(rng, n0**3), n0, g, 1.6)
    omega, amp, nres, ground_t, h, members = perturbative.perturbative_amplitudes(sb, 0.1)
    e_eff, s_eff, dressed, ux_eff, x_eff, u1 = members
    table, g_table = perturbative._kernel_table(sb)
    ctx = excited.FirstOrderContext(e_eff, x_eff, u1, table, g_table, sb.positions, sb.n0, 0.1, ground_t)
    fast = excited.single_double_resonances(ctx)
    slow = excited.single_double_resonances(ctx, use_kernels=False)
    assert len(fast[0]) > 0  # resonances exist, so both branches are exercised
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    nl = sb.n_levels
    for s_, m, t, p in [(0, 1, 1, 1), (0, nl - 1, 3, 1), (2, 1, 7, nl - 1), (5, 2, 4, 2)]:
        np.testing.assert_allclose(excited.double_amplitude(ctx, s_, m, t, p),
                                   excited._double_amplitude_reference(ctx, s_, m, t, p), rtol=1e-11, atol=1e-15)
        assert np.abs(excited.double_amplitude(ctx, s_, m, t, p)).max() > 0
    pairs = [(0, 1, 0, 1), (0, 1, 0, nl - 1), (1, nl - 1, 2, 1), (3, 2, 5, nl - 1), (4, 1, 7, 1)]
    for s_, m, t, p in pairs:
        np.testing.assert_allclose(excited.single_element(ctx, s_, m, t, p),
                                   excited.single_element(ctx, s_, m, t, p, use_kernels=False),
                                   rtol=1e-11, atol=1e-13)
