"""Tests for blocksim.model.units (BRIEF §2): round trips, the coupling g by hand, bad input."""

from __future__ import annotations

import math

import pytest

from blocksim.errors import InputError
from blocksim.model.units import PhysicalScales

# CODATA 2018 exact SI values, typed by hand so that the test does not reuse the module's source.
E_CHARGE = 1.602176634e-19  # J per eV
K_B = 1.380649e-23  # J per K
H_PLANCK = 6.62607015e-34  # J s
HBAR = H_PLANCK / (2 * math.pi)

SIO2 = dict(E_star_K=1.0, L1_angstrom=10.0, rho_g_cm3=2.2, ct_km_s=3.8, cl_km_s=5.8, T_star_eV=1.04)


@pytest.fixture
def scales():
    return PhysicalScales(**SIO2)


def test_coupling_g_of_silica_like_numbers_by_hand(scales):
    # T* = 1.04 eV, ρ = 2200 kg/m³, c_t = 3800 m/s, L_1 = 1e-9 m, E* = k_B·1 K.
    t_star = 1.04 * E_CHARGE
    denominator = 2200.0 * 3800.0**2 * (1e-9) ** 3 * K_B
    expected = t_star**2 / denominator
    assert math.isclose(scales.coupling_g(), expected, rel_tol=1e-12)
    assert 60.0 < expected < 65.0  # ≈ 63.3: order of magnitude sanity of the hand numbers


def test_coupling_g_scaling(scales):
    import dataclasses

    g = scales.coupling_g()
    assert math.isclose(dataclasses.replace(scales, L1_angstrom=20.0).coupling_g(), g / 8, rel_tol=1e-13)
    assert math.isclose(dataclasses.replace(scales, T_star_eV=2.08).coupling_g(), 4 * g, rel_tol=1e-13)
    assert math.isclose(dataclasses.replace(scales, E_star_K=3.0).coupling_g(), g / 3, rel_tol=1e-13)
    # c_l does not enter g
    assert math.isclose(dataclasses.replace(scales, cl_km_s=7.0).coupling_g(), g, rel_tol=0)


def test_from_E_star_eV(scales):
    fields = {k: v for k, v in SIO2.items() if k != "E_star_K"}
    s = PhysicalScales.from_E_star_eV(1e-3, **fields)
    assert math.isclose(s.E_star_K, 1e-3 * E_CHARGE / K_B, rel_tol=1e-14)  # ≈ 11.6 K
    assert math.isclose(s.energy_to_engine(1.0, "meV"), 1.0, rel_tol=1e-14)


@pytest.mark.parametrize("unit, joule", [("K", K_B), ("eV", E_CHARGE), ("meV", 1e-3 * E_CHARGE), ("J", 1.0),
                                         ("Hz", H_PLANCK), ("GHz", 1e9 * H_PLANCK), ("rad/s", HBAR), ("mK", 1e-3 * K_B)])
def test_energy_conversion_and_round_trip(scales, unit, joule):
    value = 3.7
    engine = scales.energy_to_engine(value, unit)
    assert math.isclose(engine, value * joule / (1.0 * K_B), rel_tol=1e-13)
    assert math.isclose(scales.energy_from_engine(engine, unit), value, rel_tol=1e-14)


def test_temperature_and_frequency(scales):
    s = PhysicalScales(**{**SIO2, "E_star_K": 2.0})
    assert s.temperature_to_engine(0.5) == 0.25
    assert s.temperature_from_engine(0.25) == 0.5
    omega = 2 * math.pi * 1e9  # 1 GHz
    engine = s.frequency_to_engine(omega)
    assert math.isclose(engine, HBAR * omega / (2.0 * K_B), rel_tol=1e-13)  # ≈ 0.024
    assert math.isclose(s.frequency_from_engine(engine), omega, rel_tol=1e-14)
    # temperature ↔ frequency consistency: ħω = k_B T at ω = k_B T / ħ
    assert math.isclose(s.frequency_to_engine(K_B * 1.0 / HBAR), s.temperature_to_engine(1.0), rel_tol=1e-13)


def test_lengths(scales):
    assert math.isclose(scales.length_to_engine(25.0), 2.5, rel_tol=1e-15)
    assert math.isclose(scales.length_to_engine(2.5, "nm"), 2.5, rel_tol=1e-15)
    assert math.isclose(scales.length_from_engine(2.5, "m"), 2.5e-9, rel_tol=1e-15)
    assert math.isclose(scales.length_from_engine(scales.length_to_engine(7.0, "Å"), "Å"), 7.0, rel_tol=1e-15)


def test_stress_and_ratio(scales):
    assert math.isclose(scales.stress_to_engine(0.65), 0.625, rel_tol=1e-14)
    assert math.isclose(scales.stress_from_engine(0.625), 0.65, rel_tol=1e-14)
    assert math.isclose(scales.cl_over_ct, 5.8 / 3.8, rel_tol=1e-15)


def test_frozen(scales):
    with pytest.raises(AttributeError):
        scales.E_star_K = 2.0


@pytest.mark.parametrize(
    "override, field",
    [
        ({"E_star_K": 0.0}, "E_star_K"),
        ({"L1_angstrom": -1.0}, "L1_angstrom"),
        ({"rho_g_cm3": float("nan")}, "rho_g_cm3"),
        ({"ct_km_s": float("inf")}, "ct_km_s"),
        ({"T_star_eV": "abc"}, "T_star_eV"),
        ({"cl_km_s": 4.0}, "cl_km_s"),  # 4.0/3.8 < sqrt(4/3)
    ],
)
def test_bad_scales(override, field):
    with pytest.raises(InputError, match=rf"^{field} = "):
        PhysicalScales(**{**SIO2, **override})


def test_bad_units(scales):
    with pytest.raises(InputError, match=r"^unit = 'ev': must be one of .*did you mean 'eV'"):
        scales.energy_to_engine(1.0, "ev")
    with pytest.raises(InputError, match=r"^unit = 'furlong'"):
        scales.length_to_engine(1.0, "furlong")
    with pytest.raises(InputError, match=r"^T_K = -1"):
        scales.temperature_to_engine(-1.0)
    with pytest.raises(InputError, match=r"^value = nan"):
        scales.energy_to_engine(float("nan"), "K")
