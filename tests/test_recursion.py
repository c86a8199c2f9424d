"""Tests of blocksim.theory.recursion: Eq. (3.4)-(3.7), (4.1)-(4.5), (5.8)-(5.10) of [ZL]."""

import math

import numpy as np
import pytest

from blocksim.theory import recursion as rc
from blocksim.errors import InputError


@pytest.mark.parametrize(
    "alpha, const_l, x_l, const_t, x_t",
    [
        # α = 0: 55, 44; 35, 28.  α = 1: 55+176+688 = 919, 44·(1+4+4) = 396; 35+112+656 = 803, 28·9 = 252.
        pytest.param(0.0, 55.0, 44.0, 35.0, 28.0, id="alpha0"),
        pytest.param(1.0, 919.0, 396.0, 803.0, 252.0, id="alpha1"),
    ],
)
def test_eq35_coefficients_hand_values(alpha, const_l, x_l, const_t, x_t):
    for x in (0.0, 1.0, -0.5, 2.5):
        coef_l, coef_t = rc.e2_coefficients(alpha, x)
        assert coef_l == pytest.approx(const_l + x_l * x, rel=1e-14)
        assert coef_t == pytest.approx(const_t + x_t * x, rel=1e-14)


def test_x_ratio_reads_l_over_t():
    assert rc.x_ratio(-3.0, -1.0) == pytest.approx(1.0)
    # isotropic lower bound χ_l/χ_t = 4/3 gives x = -2/3
    assert rc.x_ratio(-4.0 / 3.0, -1.0) == pytest.approx(-2.0 / 3.0)
    with pytest.raises(InputError):
        rc.x_ratio(-1.0, 0.0)


def test_e_dot_2_prefactor_and_l_t_ratio():
    alpha = rc.alpha_from_ratio(1.6)
    x = 0.3
    e_l, e_t = rc.e_dot_2(0.5, 0.0, 2.0, alpha, x, 3)
    pref = 3**3 * math.log(3) / (40 * math.pi**3) * 0.5 * 2.0
    coef_l, coef_t = rc.e2_coefficients(alpha, x)
    assert e_l == pytest.approx(pref * coef_l)
    assert e_t == pytest.approx(pref * coef_t)
    # Eq. 3.6 has the same length dependence (N0³ ln N0) with K instead of coef/40
    assert rc.e_dot_3(1.0, 0.5, 0.0, 2.0, 3) == pytest.approx(pref * 40.0)


def test_v_dot_sign_and_reduced_form():
    # Im χ̃ < 0 and Re χ̃ < 0 → positive absorption; reduced form = V̇/((N0L)³·2A²k²ω(1−e^{−βω}))
    omega, temp, n0 = 0.3, 0.1, 4
    v = rc.v_dot(omega, temp, -0.2, -0.7, n0, volume=1.0, rho_c2=2.0)
    assert v > 0
    red = v / (n0**3 * 2.0 * omega * rc.thermal_factor(omega, temp))
    assert red == pytest.approx(rc.v_dot_reduced(-0.2, -0.7, n0, rho_c2=2.0))


def test_e_dot_1_and_single_rate():
    e = rc.single_block_rate(-0.1, 0.2, 0.0)
    assert e == pytest.approx(2 * 0.2 * 0.1)
    assert rc.e_dot_1(e, 3) == pytest.approx(27 * e)


@pytest.mark.parametrize("scaling", ["l-cubed", "first-step-only"])
@pytest.mark.parametrize("n0", [2, 3, 5])
def test_solution_42_equals_iterating_41(scaling, n0):
    steps = 7
    it = rc.iterate_recursion(1.3, 0.27, steps, n0, eps23_1=0.4, eps23_scaling=scaling)
    closed = rc.recursion_solution(1.3, 0.27, float(n0) ** np.arange(steps + 1), n0, eps23_1=0.4,
                                   eps23_scaling=scaling)
    np.testing.assert_allclose(it, closed, rtol=1e-12)


def test_recursion_is_linear_in_log_scale():
    eps = rc.recursion_solution(0.5, 0.2, 2.0 ** np.arange(10), 2)
    np.testing.assert_allclose(np.diff(eps), 0.2, rtol=1e-12)
    np.testing.assert_allclose(rc.log_flow(2.0 ** np.arange(10), 0.5, 0.2, 2), eps, rtol=1e-12)


@pytest.mark.parametrize("cl_over_ct", [1.2, 1.53, 1.6, 1.87, 2.01])
def test_fixed_point_of_45_is_cl_over_ct(cl_over_ct):
    assert rc.mb_fixed_point(cl_over_ct) == pytest.approx(cl_over_ct, rel=1e-10)
    # the map really has that fixed point: F(r*) = r*
    r_star = rc.mb_fixed_point(cl_over_ct) ** 2
    assert rc.self_consistent_ratio_map(r_star, cl_over_ct) == pytest.approx(r_star, rel=1e-10)


@pytest.mark.parametrize("cl_over_ct", [1.3, 1.6, 2.0])
@pytest.mark.parametrize("kappa, n0, r", [(1.0, 2, 1e6), (5.0, 3, 1e3)])
def test_fixed_point_of_flow_is_cl_over_ct(cl_over_ct, kappa, n0, r):
    mb, y_l, y_t = rc.mb_fixed_point_flow(cl_over_ct, re_over_im=kappa, n0=n0, r_over_l1=r)
    assert mb == pytest.approx(cl_over_ct, rel=1e-10)
    # self-consistency: y = m·2 ln N0 κ y²/ρc² (Eq. 4.2 with v̇ at R, ε̇(L1) = 0)
    m = math.log(r) / math.log(n0)
    assert y_t == pytest.approx(m * 2 * math.log(n0) * kappa * y_t**2, rel=1e-10)


def test_fixed_point_with_bare_absorption_moves_away():
    mb0, *_ = rc.mb_fixed_point_flow(1.6)
    mb1, *_ = rc.mb_fixed_point_flow(1.6, eps1_l=0.01, eps1_t=0.001)
    assert mb0 == pytest.approx(1.6)
    assert abs(mb1 - 1.6) > 1e-3


def test_critical_lengths_physical_units():
    # Eq. 4.4 by hand for a-SiO2 (ρ = 2.2 g/cm³, c_t = 3.8 km/s): (ħ 1e15/(ρc² ln 1e8))^{1/3}
    hbar = 1.054571817e-34
    lc = (hbar * 1e15 / (2200 * 3800.0**2 * math.log(1e8))) ** (1 / 3) / 1e-10
    assert rc.critical_length_eq44(2.2, 3.8) == pytest.approx(lc, rel=1e-8)
    assert rc.critical_length_eq44(2.2, 3.8) < 50.0  # below L1 = 50 Å, as the paper argues
    # Eq. 5.10 for BK7 (Sec. V): n_eμ²/ε = 1.62e-3, n0M² = 1e8 erg/cm³, ρ = 2.51 g/cm³, c = 6.5 km/s
    lc510 = (1.62e-3**2 * 2510 * 6500.0**2 * hbar * 1e15 / ((1e8 * 0.1) ** 2 * math.log(1e8))) ** (1 / 3) / 1e-10
    assert rc.critical_length_eq510(1.62e-3, 1e8, 2.51, 6.5) == pytest.approx(lc510, rel=1e-8)
    with pytest.raises(InputError):
        rc.critical_length_eq44(-1.0, 3.0)


def test_dipole_terms_ratio():
    e_l, e_t = rc.e_dot_dipole(0.4, 0.0, 1.5, 3, 3.7)
    assert e_l / e_t == pytest.approx(94.0 / 53.0)
    assert e_l == pytest.approx(94 * 27 * math.log(3) / (960 * math.pi**2 * 3.7**2) * 0.4 * 1.5)


def test_self_convolution_of_box():
    grid = np.linspace(-2.0, 2.0, 4001)
    f = np.where(np.abs(grid) <= 1.0, 1.0, 0.0)
    # box * box = triangle: 2 − |ω| for |ω| ≤ 2
    assert rc.self_convolution(grid, f, 0.5) == pytest.approx(1.5, abs=2e-3)


def test_bad_input():
    with pytest.raises(InputError):
        rc.e_dot_1(1.0, 1)
    with pytest.raises(InputError):
        rc.iterate_recursion(1.0, 0.1, 3, 2, eps23_scaling="nope")
