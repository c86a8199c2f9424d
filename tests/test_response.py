"""Tests of blocksim.response: Eq. (2.2), (2.9)–(2.12), (3.1) of [ZL], sum rules, KK, detailed balance."""

from __future__ import annotations

import numpy as np
import pytest

from blocksim import response
from blocksim.model import blocks
from blocksim.errors import InputError
from blocksim.response import Transitions
from blocksim.model.tensors import direction_strains, isotropic_projection, to_mandel

E_L, E_T = direction_strains([0, 0, 1], [1, 0, 0])  # χ_zzzz and χ_xzxz


def small_block(seed=1, n=4, mb_bare=1.6):
    energies, stress = blocks.generic_blocks(np.random.default_rng(seed), 1, n, mb_bare=mb_bare)
    return energies[0], stress[0]


def projected(stress, e):
    """The operator e·T as an n×n matrix."""
    return np.einsum("a,amn->mn", e, stress)


# ------------------------------------------------------------------------------------------------
# Populations and transitions
# ------------------------------------------------------------------------------------------------
def test_boltzmann_values_and_zero_temperature():
    e = np.array([0.0, 0.0, 0.5, 1.3])
    p = response.boltzmann(e, [0.0, 0.4, 1e9])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(p[0], [0.5, 0.5, 0.0, 0.0])  # degenerate ground state: equal weights
    assert np.isclose(p[1, 3] / p[1, 2], np.exp(-(1.3 - 0.5) / 0.4), rtol=1e-14)
    assert np.allclose(p[2], 0.25, rtol=1e-8)


def test_thermal_factor_zero_temperature():
    f = response.thermal_factor([-1.0, 0.0, 0.5], [0.0, 1.0])
    assert np.array_equal(f[0], [-1.0, 0.0, 1.0])
    assert np.isclose(f[1, 2], 1.0 - np.exp(-0.5), rtol=1e-14)


def test_transitions_from_levels_contract():
    e, s = small_block(n=3)
    tr = response.transitions_from_levels(e, s, [0.0, 0.7], volume=2.0)
    assert tr.omega.shape == (6,) and tr.amp.shape == (6, 6) and tr.population.shape == (2, 6)
    assert tr.volume == 2.0
    p = response.boltzmann(e, [0.0, 0.7])
    k = 0
    for m in range(3):
        for n in range(3):
            if m == n:
                continue
            assert tr.omega[k] == e[n] - e[m]
            assert np.array_equal(tr.amp[k], s[:, m, n])
            assert np.array_equal(tr.population[:, k], p[:, m])
            k += 1


def test_concat_equals_joint_spectrum(monkeypatch):
    """Splitting a transition list (and chunking the line sums) changes nothing."""
    e, s = small_block(n=5)
    tr = response.transitions_from_levels(e, s, [0.2, 1.0])
    idx = np.arange(tr.size)
    parts = [Transitions(tr.omega[sel], tr.amp[sel], tr.population[:, sel], tr.temperatures)
             for sel in (idx[:7], idx[7:13], idx[13:])]
    joined = parts[0].concat(parts[1:])
    w = np.linspace(-4, 4, 41)
    ref = response.im_chi(tr, w, E_L, width=0.1)
    assert np.allclose(response.im_chi(joined, w, E_L, width=0.1), ref, rtol=1e-13, atol=0)
    monkeypatch.setattr(response.chi, "_CHUNK", 3)
    assert np.allclose(response.im_chi(tr, w, E_L, width=0.1), ref, rtol=1e-12, atol=1e-15)
    with pytest.raises(InputError, match="temperatures"):
        parts[0].concat([Transitions(tr.omega, tr.amp, tr.population, [0.3, 1.0])])


def test_volume_scaling():
    e, s = small_block()
    w = np.linspace(0.1, 3, 7)
    a = response.im_chi_tilde(response.transitions_from_levels(e, s, [0.5]), w, E_L, width=0.1)
    b = response.im_chi_tilde(response.transitions_from_levels(e, s, [0.5], volume=8.0), w, E_L, width=0.1)
    assert np.allclose(a, 8.0 * b, rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# TTLS limit, Eq. (2.2) and Eq. (3.1)
# ------------------------------------------------------------------------------------------------
def ttls_transitions(delta, delta0, gamma_l, gamma_t, temperatures):
    """One TTLS, stress (1/2)[[−D, M], [M, D]] ⊗ t (ground first) with e_l·t = γ_l, e_t·t = γ_t."""
    energy = np.hypot(delta, delta0)
    d, m = delta / energy, delta0 / energy
    t = to_mandel(np.array([[0.0, 0.0, gamma_t], [0.0, 0.0, 0.0], [gamma_t, 0.0, gamma_l]]))
    assert np.isclose(E_L @ t, gamma_l) and np.isclose(E_T @ t, gamma_t)
    stress = np.einsum("a,mn->amn", t, 0.5 * np.array([[-d, m], [m, d]]))
    return energy, m, response.transitions_from_levels(np.array([0.0, energy]), stress, temperatures)


@pytest.mark.parametrize(
    "temperature",
    [pytest.param(0.0, id="T=0"), pytest.param(0.3, id="T=0.3"), pytest.param(2.0, id="T=2")],
)
def test_ttls_absorption_matches_eq_2_2(temperature):
    """Eq. (3.1) with Eq. (2.11) for one TTLS gives Eq. (2.2) exactly, no extra factor:

    ∫ Ė dω over the line = (π/2) (Ak)² M² E tanh(βE/2) γ²  (ħ = 1, V = L³ cancels between
    Eq. 3.1 and the 1/V of Eq. 2.11; coupling normalisation of Eq. 2.1: (γ/2)[[D, M], [M, −D]]·Ak).
    """
    gamma_l, gamma_t, ak, vol = 1.7, 1.1, 0.3, 5.0
    energy, m, tr = ttls_transitions(0.4, 0.3, gamma_l, gamma_t, [temperature])
    tr = Transitions(tr.omega, tr.amp, tr.population, tr.temperatures, volume=vol)
    h = 1e-3
    edges = np.array([energy - h, energy + h])  # one bin centred exactly on the line
    tanh = 1.0 if temperature == 0 else np.tanh(energy / (2 * temperature))
    rates = {}
    for name, e, gamma in (("l", E_L, gamma_l), ("t", E_T, gamma_t)):
        chi_tilde = response.im_chi_tilde(tr, edges, e, line="bins")
        rate_density = response.absorption_rate(chi_tilde[0, 0], energy, temperature, amplitude_k=ak, volume=vol)
        rates[name] = rate_density * (2 * h)  # ∫ over the bin of the δ-line
        expect = 0.5 * np.pi * ak**2 * m**2 * energy * tanh * gamma**2
        assert np.isclose(rates[name], expect, rtol=1e-12)
        assert rates[name] > 0
    assert np.isclose(rates["l"] / rates["t"], gamma_l**2 / gamma_t**2, rtol=1e-12)


def test_ttls_ratio_any_line_and_mb_ratio():
    """Ė_l/Ė_t = γ_l²/γ_t² at every ω (Lorentzian line), so MB = sqrt(Im χ_l/Im χ_t) = γ_l/γ_t."""
    _, _, tr = ttls_transitions(-0.2, 0.5, 1.6, 1.0, [0.0, 0.5])
    w = np.linspace(0.05, 2.0, 20)
    im_l = response.im_chi(tr, w, E_L, width=0.05)
    im_t = response.im_chi(tr, w, E_T, width=0.05)
    assert np.allclose(response.mb_ratio(im_l, im_t), 1.6, rtol=1e-12)
    rl = response.absorption_rate(response.im_chi_tilde(tr, w, E_L, width=0.05), w, [0.0, 0.5])
    rt = response.absorption_rate(response.im_chi_tilde(tr, w, E_T, width=0.05), w, [0.0, 0.5])
    assert np.allclose(rl / rt, 1.6**2, rtol=1e-12)


def test_ttls_block_factory_gives_same_physics():
    """A k = 1 ttls_blocks block: Σ over ω of Im χ̃ (T = 0) equals −π (e·T_01)² with T_01 = (γ/2) M t."""
    energies, stress = blocks.ttls_blocks(np.random.default_rng(4), 1, 1, gamma=2.0)
    tr = response.transitions_from_levels(energies[0], stress[0], [0.0])
    edges = np.linspace(0, 2 * energies[0, 1], 5)
    weight = -np.sum(response.im_chi_tilde(tr, edges, E_L, line="bins") * np.diff(edges)) / np.pi
    assert np.isclose(weight, (E_L @ stress[0, :, 0, 1]) ** 2, rtol=1e-13)


# ------------------------------------------------------------------------------------------------
# Signs, detailed balance, oddness
# ------------------------------------------------------------------------------------------------
def well_separated_block():
    """A 4-level block whose 6 transition frequencies are separated by > 0.02 (σ = 1e-3 lines)."""
    for seed in range(100):
        e, s = small_block(seed=seed, n=4)
        iu = np.triu_indices(4, 1)
        diffs = np.sort((e[None, :] - e[:, None])[iu])  # the 6 positive frequencies E_n − E_m, n > m
        if np.min(np.diff(diffs)) > 0.02 and diffs[0] > 0.02:
            return e, s
    raise AssertionError("no well separated block found")


@pytest.mark.parametrize("temperature", [pytest.param(0.2, id="T=0.2"), pytest.param(1.5, id="T=1.5")])
def test_detailed_balance(temperature):
    """Im χ̃(−ω_k) = e^{−βω_k} Im χ̃(ω_k) at each line centre (Gaussian σ = 1e-3, isolated lines)."""
    e, s = well_separated_block()
    tr = response.transitions_from_levels(e, s, [temperature])
    w = np.unique(np.abs(tr.omega))
    for strain in (E_L, E_T):
        plus = response.im_chi_tilde(tr, w, strain, line="gaussian", width=1e-3)[0]
        minus = response.im_chi_tilde(tr, -w, strain, line="gaussian", width=1e-3)[0]
        assert np.all(plus < 0)
        assert np.allclose(minus, np.exp(-w / temperature) * plus, rtol=1e-10, atol=0)
        # the two forms of Im χ agree at the line centres of sharp lines
        db = response.im_chi(tr, w, strain, line="gaussian", width=1e-3)[0]
        sp = response.im_chi(tr, w, strain, line="gaussian", width=1e-3, form="spectral")[0]
        assert np.allclose(db, sp, rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    "line, width",
    [pytest.param("lorentzian", 0.05, id="lorentzian"), pytest.param("gaussian", 0.05, id="gaussian")],
)
@pytest.mark.parametrize("form", [pytest.param("detailed_balance", id="db"), pytest.param("spectral", id="spectral")])
def test_im_chi_odd_and_negative(line, width, form):
    e, s = small_block(seed=3, n=5)
    tr = response.transitions_from_levels(e, s, [0.0, 0.3, 3.0])
    w = np.linspace(0.01, 5.0, 300)
    for strain in (E_L, E_T, direction_strains([1, 1, 1])[1]):
        pos = response.im_chi(tr, w, strain, line=line, width=width, form=form)
        neg = response.im_chi(tr, -w, strain, line=line, width=width, form=form)
        assert np.all(pos <= 0) and np.all(pos[np.abs(pos) > 1e-300] < 0)  # Gaussian tails underflow to 0
        assert np.all(pos[:, (w > 0.5 * e[1]) & (w < e[-1])] < 0)
        assert np.allclose(neg, -pos, rtol=1e-12, atol=0)
        assert np.all(response.im_chi_tilde(tr, w, strain, line=line, width=width) <= 0)


# ------------------------------------------------------------------------------------------------
# Sum rules
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strain", [pytest.param(E_L, id="l"), pytest.param(E_T, id="t")])
def test_sum_rule_zero_temperature(strain):
    """−(1/π) ∫_{ω>0} Im χ̃(T = 0, ω) dω = ⟨0|T²|0⟩ − ⟨0|T|0⟩² with T = e·T (binned, and Gaussian lines)."""
    e, s = small_block(seed=5, n=6)
    op = projected(s, strain)
    expect = (op @ op)[0, 0] - op[0, 0] ** 2
    tr = response.transitions_from_levels(e, s, [0.0])
    edges = np.linspace(0.0, e[-1] + 1.0, 37)
    binned = response.im_chi_tilde(tr, edges, strain, line="bins")[0]
    assert np.isclose(-np.sum(binned * np.diff(edges)) / np.pi, expect, rtol=1e-12)
    w = np.linspace(-1.0, e[-1] + 1.0, 20001)  # Gaussian σ = 0.02; the lowest line is > 5σ above 0
    assert e[1] > 0.1
    gauss = response.im_chi_tilde(tr, w, strain, line="gaussian", width=0.02)[0]
    assert np.isclose(-np.trapezoid(gauss, w) / np.pi, expect, rtol=1e-8)


def test_sum_rule_finite_temperature():
    """−(1/π) ∫ Im χ̃(T, ω) dω over all ω = Σ_m p_m (⟨m|T²|m⟩ − ⟨m|T|m⟩²)."""
    e, s = small_block(seed=6, n=5)
    temps = [0.1, 0.7, 5.0]
    p = response.boltzmann(e, temps)
    tr = response.transitions_from_levels(e, s, temps)
    edges = np.linspace(-e[-1] - 0.5, e[-1] + 0.5, 51)
    for strain in (E_L, E_T):
        op = projected(s, strain)
        expect = p @ (np.diag(op @ op) - np.diag(op) ** 2)
        got = -np.sum(response.im_chi_tilde(tr, edges, strain, line="bins") * np.diff(edges), axis=1) / np.pi
        assert np.allclose(got, expect, rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# Real part and Kramers–Kronig
# ------------------------------------------------------------------------------------------------
def kk_grid(h=0.0025):
    """Dense uniform core |ω| ≤ 6 (spacing h) plus geometric tails to |ω| = 1e4."""
    core = np.linspace(-6.0, 6.0, int(round(12.0 / h)) + 1)
    tail = 6.0 * np.geomspace(1.0, 10000.0 / 6.0, 300)[1:]
    return np.concatenate([-tail[::-1], core, tail])


@pytest.mark.parametrize(
    "line, width",
    [pytest.param("lorentzian", 0.05, id="lorentzian"), pytest.param("gaussian", 0.05, id="gaussian")],
)
def test_kramers_kronig_re_chi(line, width):
    """re_chi from the spectral sum equals the numerical KK transform of im_chi(form="spectral").

    The piecewise-linear KK quadrature has an O((h/η)²) error at the line peaks. Checks, on
    |ω| ≤ 4: the error at h = η/20 is < 1e-3 of max|Re χ|, and halving h divides it by ≈ 4 (3 to 5),
    so the residual is discretization, not a mismatch of the two definitions.
    """
    e, s = small_block(seed=7, n=4)
    tr = response.transitions_from_levels(e, s, [0.0, 0.5])
    errors = []
    for h in (2 * width / 20, width / 20):
        w = kk_grid(h)
        core = np.abs(w) <= 4.0
        im = response.im_chi(tr, w, E_L, line=line, width=width, form="spectral")
        re = response.re_chi(tr, w, E_L, line=line, width=width)
        re_kk = response.kramers_kronig_re(w, im)
        scale = np.max(np.abs(re[:, core]))
        errors.append(np.max(np.abs(re_kk[:, core] - re[:, core])) / scale)
    assert errors[1] < 1e-3
    assert 3.0 < errors[0] / errors[1] < 5.0


def test_kramers_kronig_re_analytic_pair():
    """kramers_kronig_re of Im[1/(ω − 1 + iη)] reproduces Re[1/(ω − 1 + iη)] (independent of re_chi)."""
    w = kk_grid()
    eta = 0.1
    im = -eta / ((w - 1.0) ** 2 + eta**2)
    re = (w - 1.0) / ((w - 1.0) ** 2 + eta**2)
    re_kk = response.kramers_kronig_re(w, im)
    core = np.abs(w) <= 4.0
    assert np.max(np.abs(re_kk[core] - re[core])) < 1e-3 * np.max(np.abs(re))


def test_re_chi_sharp_line_limit():
    """Narrow Lorentzian Re χ → (1/V) Σ p_m |⟨m|e·T|n⟩|² 2ω_nm/(ω² − ω_nm²) (DESIGN) away from the lines."""
    e, s = small_block(seed=8, n=4)
    temps = [0.0, 0.6]
    tr = response.transitions_from_levels(e, s, temps, volume=3.0)
    w = np.array([0.0, 0.5 * e[1], e[-1] + 2.0, 10.0])
    op = projected(s, E_L)
    p = response.boltzmann(e, temps)
    expect = np.zeros((2, w.size))
    for m in range(4):
        for n in range(4):
            if m != n:
                wnm = e[n] - e[m]
                expect += p[:, m, None] * op[m, n] ** 2 * 2 * wnm / (w**2 - wnm**2) / 3.0
    got = response.re_chi(tr, w, E_L, width=1e-7)
    assert np.allclose(got, expect, rtol=1e-8)
    assert np.all(got[:, 0] < 0)  # static limit is negative


def _one_line(c, weight=1.0):
    """A single transition at ω = c whose strain-projected weight along E_L is ``weight``, at T = 0."""
    amp = np.zeros((1, 6))
    amp[0] = np.sqrt(weight) * np.asarray(E_L) / np.dot(E_L, E_L)
    return response.Transitions(omega=np.array([c]), amp=amp, population=np.ones((1, 1)), temperatures=np.array([0.0]))


def test_re_chi_bins_is_the_hilbert_transform_of_the_box_line():
    """Binned Re χ at the bin centres = PV Hilbert transform of the binned (box) Im part.

    Checked by midpoint quadrature of (1/Δ_i)∫_box dω'/(ω̄_j − ω') for a line inside the grid (0 in
    its own bin), and exactly by the sharp-line formula for a line outside the grid.
    """
    edges = np.array([0.2, 0.5, 0.9, 1.6, 2.0])
    mid = 0.5 * (edges[1:] + edges[:-1])
    c = 0.7  # inside bin 1
    got = response.re_chi(_one_line(c), edges, E_L, line="bins")[0]
    x = np.linspace(edges[1], edges[2], 200001)
    xm = 0.5 * (x[1:] + x[:-1])
    for j in range(4):
        if j == 1:
            assert abs(got[j] + 1.0 / (mid[j] + c)) < 1e-12  # own bin: only the mirrored line at −c
            continue
        box = np.mean(1.0 / (mid[j] - xm)) - 1.0 / (mid[j] + c)  # R(ω − ω_k) − R(ω + ω_k)
        assert np.isclose(got[j], box, rtol=1e-7)
    out = response.re_chi(_one_line(3.0), edges, E_L, line="bins")[0]
    np.testing.assert_allclose(out, 1.0 / (mid - 3.0) - 1.0 / (mid + 3.0), rtol=1e-13)


@pytest.mark.parametrize("c", [pytest.param(0.5, id="inner-edge"), pytest.param(0.2, id="lowest-edge"),
                               pytest.param(2.0, id="highest-edge"), pytest.param(0.35, id="bin-centre")])
def test_re_chi_bins_is_finite_for_a_line_on_any_edge(c):
    """A line exactly on a bin edge or centre (repeated pool blocks put lines there) stays finite."""
    edges = np.array([0.2, 0.5, 0.9, 1.6, 2.0])
    got = response.re_chi(_one_line(c), edges, E_L, line="bins")
    assert np.all(np.isfinite(got))
    # continuity from above: the line sits in the bin whose lower edge it is (as in the Im part)
    if c < 2.0:
        near = response.re_chi(_one_line(c + 1e-9), edges, E_L, line="bins")
        np.testing.assert_allclose(got, near, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Tensor, directions and powder average
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "quantity, line, width",
    [pytest.param("im_chi", "lorentzian", 0.1, id="im-lor"), pytest.param("im_chi_tilde", "gaussian", 0.1, id="imt-gau"),
     pytest.param("re_chi", "lorentzian", 0.1, id="re-lor"), pytest.param("im_chi", "bins", None, id="im-bins")],
)
def test_chi_tensor_matches_projections(quantity, line, width):
    e, s = small_block(seed=10, n=4)
    tr = response.transitions_from_levels(e, s, [0.0, 0.8])
    w = np.linspace(-3, 3, 13)
    tensor = response.chi_tensor(tr, w, quantity=quantity, line=line, width=width)
    rng = np.random.default_rng(0)
    e_a, e_b = rng.standard_normal(6), rng.standard_normal(6)
    func = {"im_chi": response.im_chi, "im_chi_tilde": response.im_chi_tilde, "re_chi": response.re_chi}[quantity]
    direct = func(tr, w, e_a, e_b, line=line, width=width)
    assert np.allclose(np.einsum("a,twab,b->tw", e_a, tensor, e_b), direct, rtol=1e-12, atol=1e-14)


def test_chi_components_directions_and_powder():
    e, s = small_block(seed=11, n=4)
    tr = response.transitions_from_levels(e, s, [0.3])
    w = np.linspace(0.2, 3.0, 8)
    res = response.chi_components(tr, w, width=0.1)
    e_l, e_t = direction_strains([1, 0, 0], [0, 1, 0])
    assert np.allclose(res["100"]["l"], response.im_chi(tr, w, e_l, width=0.1), rtol=1e-12)
    assert np.allclose(res["100"]["t1"], response.im_chi(tr, w, e_t, width=0.1), rtol=1e-12)
    _, e_t2 = direction_strains([1, 1, 0], [1, -1, 0])
    assert np.allclose(res["110:1-10"]["t1"], response.im_chi(tr, w, e_t2, width=0.1), rtol=1e-12)
    assert np.allclose(res["110:001"]["t2"], res["110:1-10"]["t1"], rtol=1e-12)
    # icosahedral powder average = exact orientation average = isotropic projection (Eq. 2.12)
    for i in range(w.size):
        chi_l, chi_t, _ = isotropic_projection(res["tensor"][0, i])
        assert np.isclose(res["powder"]["l"][0, i], chi_l, rtol=1e-12)
        assert np.isclose(res["powder"]["t"][0, i], chi_t, rtol=1e-12)
    # an approximate quadrature (Fibonacci sphere) of the same average agrees to its accuracy
    fib = response.powder_directions(4000)
    avg_l = np.mean([np.einsum("a,twab,b->tw", el, res["tensor"], el)
                     for el in (direction_strains(q)[0] for q in fib)], axis=0)
    assert np.allclose(avg_l, res["powder"]["l"], rtol=1e-4)


def test_powder_mb_of_isotropic_ensemble():
    """Powder-averaged Im χ̃_l/Im χ̃_t over a generic pool equals mb_bare² within 3 standard errors."""
    rng = np.random.default_rng(12)
    energies, stress = blocks.generic_blocks(rng, 600, 3, mb_bare=1.5)
    edges = np.array([0.0, 2.0])  # all T = 0 weight of these blocks (levels ≤ 1)
    trs = [response.transitions_from_levels(energies[p], stress[p], [0.0]) for p in range(600)]
    vals = np.array([[response.chi_components(t, edges, line="bins", quantity="im_chi_tilde")["powder"][k][0, 0]
                      for k in ("l", "t")] for t in trs])
    r = vals[:, 0].mean() / vals[:, 1].mean()
    se = np.std(vals[:, 0] - r * vals[:, 1], ddof=1) / np.sqrt(600) / abs(vals[:, 1].mean())
    assert abs(r - 1.5**2) < 3 * se
    assert se < 0.05 * 1.5**2


def test_absorption_rate_and_mb_ratio_checks():
    assert response.absorption_rate(-1.0, 2.0, 0.0) == pytest.approx(4.0)
    out = response.absorption_rate(-np.ones((2, 3)), [1.0, 2.0, 3.0], [0.0, 1.0])
    assert out.shape == (2, 3) and np.all(out > 0)
    assert np.isclose(out[1, 0], 2 * 1.0 * (1 - np.exp(-1.0)))
    assert response.mb_ratio(-2.25, -1.0) == pytest.approx(1.5)
    with pytest.raises(InputError, match="im_chi_t"):
        response.mb_ratio(-1.0, 0.0)
    with pytest.raises(InputError, match="same sign"):
        response.mb_ratio(-1.0, 1.0)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def _tr():
    e, s = small_block()
    return response.transitions_from_levels(e, s, [0.1])


BAD = [
    pytest.param(lambda: response.transitions_from_levels([0.0], np.zeros((6, 1, 1)), [0.1]), r"n = 1", id="n=1"),
    pytest.param(lambda: response.transitions_from_levels([0.0, 1.0], np.zeros((6, 2, 2)), [-0.1]), r"temperatures",
                 id="negative-T"),
    pytest.param(lambda: response.boltzmann([0.0, 1.0], [float("nan")]), r"temperatures", id="nan-T"),
    pytest.param(lambda: response.boltzmann([0.0, float("nan")], [1.0]), r"energies", id="nan-energy"),
    pytest.param(lambda: response.transitions_from_levels([0.0, 1.0], np.full((6, 2, 2), np.nan), [0.1]), r"stress",
                 id="nan-stress"),
    pytest.param(lambda: response.im_chi_tilde(_tr(), [], E_L, width=0.1), r"omega", id="empty-omega"),
    pytest.param(lambda: response.im_chi(_tr(), np.array([]), E_L, width=0.1), r"omega", id="empty-omega-im"),
    pytest.param(lambda: response.re_chi(_tr(), [0.1, np.nan], E_L, width=0.1), r"omega", id="nan-omega"),
    pytest.param(lambda: response.im_chi_tilde(_tr(), [0.2, 0.1], E_L, line="bins"), r"omega", id="bad-edges"),
    pytest.param(lambda: response.im_chi_tilde(_tr(), [0.1], E_L, width=0.0), r"width", id="zero-width"),
    pytest.param(lambda: response.im_chi_tilde(_tr(), [0.1], E_L), r"width", id="missing-width"),
    pytest.param(lambda: response.im_chi_tilde(_tr(), [0.1], E_L, line="lorenzian", width=0.1),
                 r"did you mean 'lorentzian'", id="line-typo"),
    pytest.param(lambda: response.im_chi_tilde(_tr(), [0.1], np.ones(3), width=0.1), r"strain_a", id="strain-shape"),
    pytest.param(lambda: response.im_chi(_tr(), [0.1], E_L, width=0.1, form="x"), r"form", id="form"),
    pytest.param(lambda: response.chi_components(_tr(), [0.1], ["11"], width=0.1), r"directions", id="direction"),
    pytest.param(lambda: response.powder_directions(0), r"powder", id="powder"),
    pytest.param(lambda: response.kramers_kronig_re([0.0, 0.0, 1.0], np.zeros(3)), r"omega", id="kk-grid"),
    pytest.param(lambda: Transitions([0.1], np.zeros((1, 6)), np.ones((1, 1)), [0.1], volume=-1.0), r"volume",
                 id="volume"),
    pytest.param(lambda: Transitions(np.zeros(6), np.zeros((6, 6)).T[:, :6], np.ones((6, 1)), [0.1]),
                 r"population shape", id="population-transposed"),
    pytest.param(lambda: Transitions(np.zeros(3), np.zeros((6, 3)), np.ones((1, 3)), [0.1]), r"amp shape",
                 id="amp-transposed"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_input(call, message):
    with pytest.raises(InputError, match=message):
        call()


@pytest.mark.parametrize("part,sign_pair", [("im", None), ("im", -1), ("re", -1), ("re", None), ("re", 1)])
@pytest.mark.parametrize("edges", [np.geomspace(0.01, 5.0, 25), np.linspace(-2.0, 3.0, 18)], ids=["log", "signed"])
def test_binned_spectral_sum_equals_the_dense_line_matrix(part, sign_pair, edges):
    """The bins fast path (lines binned first) equals Σ_k q_k·line_profiles row by row (two routes).

    Transitions inside, outside (below, above, negative) and exactly on bin edges; several
    temperatures and weight columns; more transitions than one chunk.
    """
    from blocksim.response.chi import _BINS_CHUNK, _CHUNK, _spectral_sum

    rng = np.random.default_rng(11)
    m = max(_CHUNK, _BINS_CHUNK) + 37
    omega = np.concatenate([rng.uniform(-3.0, 7.0, m - 6), edges[[0, 3, -1]], [1e-4, -1e-3, 50.0]])
    tr = Transitions(omega=omega, amp=rng.normal(size=(m, 6)), population=rng.uniform(0, 1, (3, m)),
                     temperatures=np.array([0.1, 0.2, 0.3]))
    weights = rng.normal(size=(m, 4))
    got = _spectral_sum(tr, weights, edges, "bins", None, part, sign_pair)
    prof = response.line_profiles(omega, edges, "bins", None, part)
    if sign_pair is not None:
        prof = prof + sign_pair * response.line_profiles(-omega, edges, "bins", None, part)
    want = np.einsum("tm,mc,mw->tcw", tr.population, weights, prof)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())


def test_chi_tensors_equals_one_call_per_quantity():
    """Im and Re χ from one chi_tensors call (weight columns built once) = separate chi_tensor calls, bit for bit."""
    rng = np.random.default_rng(5)
    m = 300
    tr = Transitions(omega=rng.uniform(0.01, 4.0, m), amp=rng.normal(size=(m, 6)),
                     population=rng.uniform(0, 1, (2, m)), temperatures=np.array([0.05, 0.2]))
    for line, grid, width in (("bins", np.geomspace(0.01, 5.0, 17), None), ("lorentzian", np.linspace(0.1, 3, 9), 0.05)):
        both = response.chi_tensors(tr, grid, ("im_chi", "re_chi"), line=line, width=width)
        for quantity, got in zip(("im_chi", "re_chi"), both):
            np.testing.assert_array_equal(got, response.chi_tensor(tr, grid, quantity=quantity, line=line, width=width))
        assert np.abs(both[1]).max() > 0
    with pytest.raises(InputError, match="quantity"):
        response.chi_tensors(tr, np.linspace(0.1, 3, 9), ("im_chi", "bogus"), line="lorentzian", width=0.05)


@pytest.mark.parametrize("edges", [np.geomspace(0.01, 5.0, 25), np.linspace(-2.0, 3.0, 18)], ids=["log", "signed"])
def test_binned_pair_is_the_two_binned_sums_bit_for_bit(edges):
    """chi_tensors' one-pass route for bins (weight columns, Im χ̃ and Re χ rows in one numba pass) =
    the two chunked ``_binned_sum`` calls on the 21 weight columns, with assert_array_equal.

    Transitions inside, outside (below, above, negative), exactly on edges and at ω = 0; more than
    one chunk. The route is only used for grids ≥ 0, but it is exact on a signed grid too.
    """
    from blocksim.response.chi import _BINS_CHUNK, _IU, _binned_pair, _binned_sum

    rng = np.random.default_rng(12)
    m = 2 * _BINS_CHUNK + 51
    omega = np.concatenate([rng.uniform(-3.0, 7.0, m - 7), edges[[0, 3, -1]], [1e-4, -1e-3, 50.0, 0.0]])
    tr = Transitions(omega=omega, amp=rng.normal(size=(m, 6)), population=rng.uniform(0, 1, (3, m)),
                     temperatures=np.array([0.1, 0.2, 0.3]))
    weights = tr.amp[:, _IU[0]] * tr.amp[:, _IU[1]]
    im, re = _binned_pair(tr, edges)
    np.testing.assert_array_equal(im, _binned_sum(tr, weights, edges, "im", None))
    np.testing.assert_array_equal(re, _binned_sum(tr, weights, edges, "re", -1))
    assert np.abs(im).max() > 0 and np.abs(re).max() > 0


def test_chi_tensors_bins_route_matches_the_general_route():
    """For a grid ≥ 0, chi_tensors (one-pass route) = _response on the weight columns, both quantities."""
    from blocksim.response.chi import _IU, _response

    rng = np.random.default_rng(13)
    m = 500
    tr = Transitions(omega=rng.uniform(0.0, 6.0, m), amp=rng.normal(size=(m, 6)),
                     population=rng.uniform(0, 1, (2, m)), temperatures=np.array([0.05, 0.2]), volume=8.0)
    edges = np.geomspace(0.01, 5.0, 17)
    weights = tr.amp[:, _IU[0]] * tr.amp[:, _IU[1]]
    for quantity, got in zip(("im_chi", "re_chi"), response.chi_tensors(tr, edges, ("im_chi", "re_chi"), line="bins")):
        comp = _response(tr, weights, edges, "bins", None, quantity, "detailed_balance")
        np.testing.assert_array_equal(got[:, :, _IU[0], _IU[1]], np.moveaxis(comp, 1, 2))
        np.testing.assert_array_equal(got[:, :, _IU[1], _IU[0]], np.moveaxis(comp, 1, 2))
