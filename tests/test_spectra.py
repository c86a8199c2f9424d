"""Tests of blocksim.spectra: first-order theory against exact diagonalization, and invariants."""

import numpy as np
import pytest

from blocksim import exact, perturbative, response, spectra
from blocksim.coupling import lattice_positions
from blocksim.errors import InputError
from blocksim.tensors import cubic_rotations, direction_strains, random_rotation, rotation_mandel


def random_members(rng, nb, n, lo=0.5, hi=1.5):
    """Generic members with well separated random levels in [lo, hi] and GOE-like stresses."""
    e = np.zeros((nb, n))
    e[:, 1:] = np.sort(rng.uniform(lo, hi, (nb, n - 1)), axis=1)
    s = rng.normal(size=(nb, 6, n, n))
    return e, 0.5 * (s + np.swapaxes(s, -1, -2))


def superblock(seed, n, g, n0=2, cl_over_ct=1.6):
    rng = np.random.default_rng(seed)
    e, s = random_members(rng, n0**3, n)
    return spectra.assemble_superblock(e, s, random_rotation(rng, n0**3), n0, g, cl_over_ct)


def match_states(a, b):
    """Index into b's states of each of a's states, matched by dominant product configuration."""
    lookup = {tuple(row): i for i, row in enumerate(b.labels)}
    return np.array([lookup[tuple(row)] for row in a.labels])


def single_block_sum(sb, temps, omega, strain, width):
    total = np.zeros((len(temps), len(omega)))
    for s in range(sb.n_blocks):
        tr = response.transitions_from_levels(sb.energies[s], sb.stress[s], temps)
        total += response.im_chi_tilde(tr, omega, strain, line="lorentzian", width=width)
    return total


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["perturbative", "sector", "exact"])
def test_zero_coupling_equals_sum_of_single_blocks(method):
    sb = superblock(1, 2, 0.0)
    spec = spectra.solve(sb, method)
    temps = np.array([0.0, 0.3, 1.0])
    omega = np.linspace(-2, 3, 81)
    for q in ([0, 0, 1], [1, 1, 1]):
        e_l, e_t = direction_strains(q)
        for strain in (e_l, e_t):
            got = response.im_chi_tilde(spec.transitions(temps), omega, strain, line="lorentzian", width=0.05)
            want = single_block_sum(sb, temps, omega, strain, 0.05)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("n", [pytest.param(2, id="n2"), pytest.param(3, id="n3")])
def test_perturbation_theory_error_falls_like_g_squared(n):
    gs = np.array([1e-4, 3e-4, 1e-3])
    err_e, err_a = [], []
    for g in gs:
        sb = superblock(5, n, g)
        pt = spectra.solve(sb, "perturbative")
        ex = spectra.solve(sb, "exact")
        assert pt.diagnostics["n_resonant_pairs"] == 0
        idx = match_states(pt, ex)
        err_e.append(np.abs(pt.energies - ex.energies[idx]).max())
        strength_pt = pt.amp0[1:] ** 2
        strength_ex = ex.amp0[idx[1:]] ** 2
        err_a.append(np.abs(strength_pt - strength_ex).max() / strength_ex.max())
        # first order is already close
        assert err_a[-1] < 0.05
    slope_e = np.polyfit(np.log(gs), np.log(err_e), 1)[0]
    slope_a = np.polyfit(np.log(gs), np.log(err_a), 1)[0]
    assert slope_e >= 1.7, slope_e
    assert slope_a >= 1.7, slope_a


def test_first_order_states_match_eq_3_2_applied_literally():
    """Rayleigh–Schrödinger (Eq. 3.2) on the explicit ≤2-excitation sector matrix: same amplitudes."""
    sb = superblock(7, 3, 2e-3)
    pt = spectra.solve(sb, "perturbative", resonance_threshold=0.9)
    assert pt.diagnostics["n_resonant_pairs"] == 0
    configs = exact.sector_configs(sb.n_blocks, sb.n_levels, 2)
    h0, v, t = exact.sector_matrices(sb, configs)
    n_single = sb.n_blocks * (sb.n_levels - 1)
    c0 = np.zeros(len(configs))
    c0[1:] = v[1:, 0] / (h0[0] - h0[1:])
    lookup = {tuple(c): i for i, c in enumerate(configs)}
    for row, label in enumerate(pt.labels[1:], start=1):
        i = lookup[tuple(label)]
        assert 1 <= i <= n_single
        cn = np.where(np.arange(len(configs)) == i, 0.0, v[:, i] / np.where(h0 == h0[i], 1.0, h0[i] - h0))
        amp = t[:, i, 0] + t[:, :, 0] @ cn + t[:, i, :] @ c0
        energy = h0[i] + v[i, i] - h0[0] - v[0, 0]
        np.testing.assert_allclose(pt.amp0[row], amp, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(pt.energies[row], energy, rtol=1e-12)
    np.testing.assert_allclose(pt.amp0[0], t[:, 0, 0] + 2 * t[:, 0, :] @ c0, rtol=1e-10, atol=1e-12)


def test_kernels_match_numpy_reference():
    rng = np.random.default_rng(11)
    n0, n = 3, 3
    e, s = random_members(rng, n0**3, n, 0.2, 2.0)
    sb = spectra.assemble_superblock(e, s, random_rotation(rng, n0**3), n0, 0.05, 1.8)
    fast = perturbative.perturbative_amplitudes(sb, 0.1, use_kernels=True)
    slow = perturbative.perturbative_amplitudes(sb, 0.1, use_kernels=False)
    for a, b in zip(fast[:5] + fast[5], slow[:5] + slow[5]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert fast[2].sum() > 0  # this configuration has resonant pairs, so both branches are covered


def test_sector_equals_full_ed_when_sector_is_whole_space():
    sb = superblock(3, 2, 0.05)
    full = spectra.solve(sb, "exact")
    sector = spectra.solve(sb, "sector", max_excitations=sb.n_blocks)
    np.testing.assert_allclose(sector.energies, full.energies, atol=1e-11)
    # gauge-invariant strengths, summed within (near-)degenerate levels
    np.testing.assert_allclose(np.sum(sector.amp0**2, axis=1), np.sum(full.amp0**2, axis=1), atol=1e-9)


@pytest.mark.parametrize("method", ["sector", "exact"])
def test_sum_rule_for_exact_solvers(method):
    sb = superblock(4, 2, 0.08)
    spec = spectra.solve(sb, method, max_excitations=sb.n_blocks if method == "sector" else None)
    t_full = spec.stress_block(np.arange(len(spec.energies)))  # [6, K, K]
    for a in range(6):
        t2 = (t_full[a] @ t_full[a])[0, 0]
        np.testing.assert_allclose(np.sum(spec.amp0[1:, a] ** 2), t2 - t_full[a, 0, 0] ** 2, rtol=1e-10)


@pytest.mark.parametrize("method", ["perturbative", "sector"])
def test_cubic_symmetry_of_response(method):
    rng = np.random.default_rng(8)
    n0, n = 2, 2
    e, s = random_members(rng, n0**3, n)
    rot = random_rotation(rng, n0**3)
    sb = spectra.assemble_superblock(e, s, rot, n0, 0.03, 1.7)
    omega = np.linspace(0.2, 2.0, 40)
    temps = np.array([0.0, 0.5])
    q = np.array([0.3, -0.5, 0.8])
    e_l, e_t = direction_strains(q, np.cross(q, [1.0, 0.0, 0.0]))
    base = spectra.solve(sb, method).transitions(temps)
    ref_l = response.im_chi_tilde(base, omega, e_l, width=0.05)
    ref_t = response.im_chi_tilde(base, omega, e_t, width=0.05)
    pos = lattice_positions(n0)
    centre = (n0 - 1) / 2
    for c in cubic_rotations()[[1, 7, 13, 22]]:
        new_pos = np.rint((pos - centre) @ c.T + centre).astype(int)
        order = np.lexsort((new_pos[:, 2], new_pos[:, 1], new_pos[:, 0]))  # back to C order
        stress = np.einsum("ab,sbmn->samn", rotation_mandel(c), sb.stress)
        sb2 = spectra.assemble_superblock(e[order], stress[order], None, n0, 0.03, 1.7, positions=new_pos[order])
        tr = spectra.solve(sb2, method).transitions(temps)
        e_l2, e_t2 = direction_strains(c @ q, c @ np.cross(q, [1.0, 0.0, 0.0]))
        np.testing.assert_allclose(response.im_chi_tilde(tr, omega, e_l2, width=0.05), ref_l, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(response.im_chi_tilde(tr, omega, e_t2, width=0.05), ref_t, rtol=1e-9, atol=1e-12)


def test_resonant_pair_is_detected_and_solved_in_its_cluster():
    """Two identical members: their single excitations are degenerate, so they must form a cluster."""
    rng = np.random.default_rng(2)
    e, s = random_members(rng, 8, 2)
    e[3], s[3] = e[0], s[0]
    sb = spectra.assemble_superblock(e, s, None, 2, 1e-3, 1.6)
    pt = spectra.solve(sb, "perturbative")
    assert pt.diagnostics["n_resonant_pairs"] >= 1
    assert pt.diagnostics["n_resonant_clusters"] >= 1
    ex = spectra.solve(sb, "exact")
    # the split pair agrees with exact diagonalization to first-order accuracy
    idx = match_states(pt, ex)
    np.testing.assert_allclose(pt.energies, ex.energies[idx], atol=5e-5)
    strength = np.sum(ex.amp0[idx[1:]] ** 2, axis=1)
    pt_strength = np.sum(pt.amp0[1:] ** 2, axis=1)
    # inside the cluster the mixing angle is set by first-order splittings, so single strengths carry
    # an O(g²/splitting) error; the summed strength of the cluster is accurate to first order
    np.testing.assert_allclose(pt_strength, strength, atol=0.01 * strength.max())
    np.testing.assert_allclose(pt_strength.sum(), strength.sum(), rtol=1e-4)
    assert np.all(np.isfinite(pt.amp0))


def test_small_gap_member_is_dressed_exactly_in_its_local_field():
    """A member whose gap is smaller than its one-body coupling: first order in V/E would blow up."""
    rng = np.random.default_rng(12)
    e, s = random_members(rng, 8, 2)
    e[5, 1] = 1e-5
    sb = spectra.assemble_superblock(e, s, random_rotation(rng, 8), 2, 1e-3, 1.6)
    # every excitation |s,m⟩ is resonant with |s,m; soft flipped⟩ (a single–double resonance)
    with pytest.warns(spectra.ResonanceWarning, match="single–double"):
        pt = spectra.solve(sb, "perturbative")
    assert pt.diagnostics["n_dressed_members"] >= 1
    assert pt.diagnostics["n_resonant_single_double"] >= 6
    ex = spectra.solve(sb, "exact")
    idx = match_states(pt, ex)
    # the soft member's own level is exact in its local field; the others keep a second-order error
    # V²/E' from virtual flips of the soft member (V ≈ E' ≈ 3e-4 here), not a 1/E' blow-up
    np.testing.assert_allclose(pt.energies[1], ex.energies[idx[1]], rtol=1e-2)
    np.testing.assert_allclose(pt.energies, ex.energies[idx], atol=1e-3)
    # |s,m⟩ shares its strength with |s,m; soft flipped⟩ (E' away), so compare the response on a
    # scale coarser than E': Lorentzian lines of half-width 0.02 at T = 0
    omega = np.linspace(0.05, 2.0, 200)
    e_l, e_t = direction_strains([0, 0, 1])
    for strain in (e_l, e_t):
        a = response.im_chi_tilde(pt.transitions([0.0]), omega, strain, width=0.02)
        b = response.im_chi_tilde(ex.transitions([0.0]), omega, strain, width=0.02)
        np.testing.assert_allclose(a, b, atol=0.02 * np.abs(b).max())


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


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [
        pytest.param(dict(n0=1), "n0", id="n0-too-small"),
        pytest.param(dict(coupling_g=-1.0), "coupling_g", id="negative-g"),
        pytest.param(dict(coupling_g=float("nan")), "coupling_g", id="nan-g"),
        pytest.param(dict(cl_over_ct=1.1), "cl_over_ct", id="cl-ct-below-bound"),
        pytest.param(dict(form="jl"), "form", id="unknown-form"),
    ],
)
def test_bad_assembly_input(kwargs, field):
    rng = np.random.default_rng(0)
    e, s = random_members(rng, 8, 2)
    args = dict(n0=2, coupling_g=0.1, cl_over_ct=1.6, form="zhou-leggett")
    args.update(kwargs)
    with pytest.raises(InputError, match=field):
        spectra.assemble_superblock(e, s, None, args["n0"], args["coupling_g"], args["cl_over_ct"], args["form"])


def test_exact_solver_refuses_large_dimension_and_says_limit():
    rng = np.random.default_rng(0)
    e, s = random_members(rng, 27, 2)
    sb = spectra.assemble_superblock(e, s, None, 3, 0.1, 1.6)
    with pytest.raises(InputError, match=str(spectra.MAX_EXACT_DIM)):
        spectra.solve(sb, "exact")


def test_unknown_solver_and_bad_threshold():
    sb = superblock(0, 2, 0.1)
    with pytest.raises(InputError, match="solver.method"):
        spectra.solve(sb, "dmrg")
    with pytest.raises(InputError, match="resonance_threshold"):
        spectra.solve(sb, "perturbative", resonance_threshold=2.0)


def test_strong_coupling_warns_with_count():
    sb = superblock(1, 2, 30.0)
    with pytest.warns(spectra.ResonanceWarning, match=r"\d+ of 8 single excitations"):
        spectra.solve(sb, "perturbative")


def test_identical_members_at_zero_coupling_give_finite_results():
    """Resampled pools can put one block twice into a super block: exact degeneracy with V = 0."""
    rng = np.random.default_rng(4)
    e, s = random_members(rng, 8, 3)
    e[6], s[6] = e[2], s[2]
    sb = spectra.assemble_superblock(e, s, None, 2, 0.0, 1.6)
    pt = spectra.solve(sb, "perturbative")
    assert np.all(np.isfinite(pt.amp0)) and np.all(np.isfinite(pt.energies))
    omega = np.linspace(0.1, 2, 50)
    e_l, _ = direction_strains([0, 0, 1])
    np.testing.assert_allclose(
        response.im_chi_tilde(pt.transitions([0.0, 0.5]), omega, e_l, width=0.05),
        single_block_sum(sb, np.array([0.0, 0.5]), omega, e_l, 0.05),
        rtol=1e-10,
    )


def test_level_pushed_below_ground_by_local_field_is_dressed():
    """A member with no off-diagonal stress whose first-order level shift exceeds its gap."""
    rng = np.random.default_rng(6)
    e, s = random_members(rng, 8, 2)
    s[1, :, 0, 1] = s[1, :, 1, 0] = 0.0
    g = 0.05
    sb = spectra.assemble_superblock(e, s, None, 2, g, 1.6)
    h1 = sum(sb.coupling(1, t) @ sb.stress[t, :, 0, 0] for t in range(8) if t != 1)
    # choose T_11 − T_00 of member 1 so that 2h·(T_11 − T_00) = −2 E_1
    s[1, :, 1, 1] = s[1, :, 0, 0] - e[1, 1] * h1 / (h1 @ h1)
    sb = spectra.assemble_superblock(e, s, None, 2, g, 1.6)
    pt = spectra.solve(sb, "perturbative")
    assert pt.diagnostics["n_dressed_members"] == 1
    assert np.all(pt.energies[1:] > 0)


def _with_dipoles(seed, g, g_e, n=2):
    rng = np.random.default_rng(seed)
    e, s = random_members(rng, 8, n)
    p = rng.normal(size=(8, 3, n, n))
    p = 0.5 * (p + np.swapaxes(p, -1, -2))
    rot = random_rotation(rng, 8)
    return spectra.assemble_superblock(e, s, rot, 2, g, 1.6, dipoles=p, dipole_coupling=g_e), (e, s, p, rot)


def test_dipole_channel_off_is_identical_and_coupling_is_eq_5_2():
    sb, (e, s, p, rot) = _with_dipoles(21, 0.05, 0.0)
    plain = spectra.assemble_superblock(e, s, rot, 2, 0.05, 1.6)
    a, b = spectra.solve(sb, "exact"), spectra.solve(plain, "exact")
    np.testing.assert_allclose(a.energies, b.energies, atol=1e-12)
    sb2, _ = _with_dipoles(21, 0.05, 0.3)
    from blocksim.coupling import dipole_coupling

    r = (sb2.positions[0] - sb2.positions[5]).astype(float)
    np.testing.assert_allclose(sb2.coupling(0, 5)[6:, 6:], 0.3 * dipole_coupling(r, 1.0), rtol=1e-14)
    np.testing.assert_allclose(sb2.coupling(0, 5)[:6, 6:], 0.0)


def test_dipole_channel_exact_equals_sector_and_first_order_ground_shift():
    sb, (e, s, p, rot) = _with_dipoles(22, 0.0, 0.01)
    ex = spectra.solve(sb, "exact")
    sector = spectra.solve(sb, "sector", max_excitations=8)
    np.testing.assert_allclose(sector.energies, ex.energies, atol=1e-11)
    # first order: E_0 − Σ E_0^(s) = g_e Σ_{s≠t} ⟨0|p^s|0⟩·μ̂·⟨0|p^t|0⟩ (+ O(g_e²))
    p0 = sb.dipoles[:, :, 0, 0]
    first = sum(p0[a] @ sb.coupling(a, b)[6:, 6:] @ p0[b] for a in range(8) for b in range(8) if a != b)
    shifts = []
    for g_e in (0.005, 0.01):
        sbx, _ = _with_dipoles(22, 0.0, g_e)
        shifts.append(spectra.solve(sbx, "exact").diagnostics["ground_shift"] - first * g_e / 0.01)
    assert abs(shifts[0]) < 0.3 * abs(first) * 0.5 and abs(shifts[1] / shifts[0]) == pytest.approx(4.0, rel=0.1)


def test_dipole_channel_in_perturbation_theory_matches_exact_with_g_squared_error():
    errs = []
    scales = np.array([1e-4, 3e-4, 1e-3])
    for x in scales:
        sb, _ = _with_dipoles(23, x, 2 * x)
        pt = spectra.solve(sb, "perturbative")
        ex = spectra.solve(sb, "exact")
        assert pt.diagnostics["n_resonant_pairs"] == 0
        idx = match_states(pt, ex)
        strength = ex.amp0[idx[1:]] ** 2
        errs.append(
            (np.abs(pt.energies - ex.energies[idx]).max(), np.abs(pt.amp0[1:] ** 2 - strength).max() / strength.max())
        )
    errs = np.array(errs)
    slopes = np.polyfit(np.log(scales), np.log(errs), 1)[0]
    assert np.all(slopes >= 1.7), slopes
    # and the dipole term matters: without it the first-order energies differ at first order
    sb, (e, s, p, rot) = _with_dipoles(23, 1e-3, 2e-3)
    no_dip = spectra.solve(spectra.assemble_superblock(e, s, rot, 2, 1e-3, 1.6), "perturbative")
    assert np.abs(no_dip.energies - spectra.solve(sb, "perturbative").energies).max() > 10 * errs[-1, 0]


def test_dipole_kernels_match_numpy_reference():
    sb, _ = _with_dipoles(24, 0.05, 0.08, n=3)
    fast = perturbative.perturbative_amplitudes(sb, 0.1, use_kernels=True)
    slow = perturbative.perturbative_amplitudes(sb, 0.1, use_kernels=False)
    for a, b in zip(fast[:5] + fast[5], slow[:5] + slow[5]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


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
