"""Physical units ↔ engine units (BRIEF §2).

Inside the engine ħ = k_B = 1, energies (and temperatures, and angular frequencies) are in units of
the starting block's level scale E*, lengths are in units of the starting block size L_1, and the
stress–stress coupling enters only through the dimensionless constant

    g = T*² / (ρ c_t² L_1³ E*)

(BRIEF §2), where T* is the stress scale of a block (an energy, like the TTLS couplings γ_l, γ_t of
[ZL] Sec. IV), ρ the mass density and c_t the transverse sound velocity. Λ of Eq. (A15) of [ZL] is
computed with ρ c_t² = 1 and lengths in L_1, so the physical interaction energy of two blocks in units
of E* is g · Σ Λ_ijkl T_ij T'_kl with T in units of T*. Apart from g, only c_l/c_t enters.

This module converts at the edges only: user input in Å, K, eV, g/cm³, km/s → engine numbers, and
engine numbers → physical units for reports. Constants are CODATA exact/recommended values from
:mod:`scipy.constants` ([CODATA18] in :mod:`blocksim.references`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import constants as _c

from ..errors import InputError, suggest

__all__ = ["PhysicalScales", "ENERGY_UNITS", "LENGTH_UNITS", "energy_in_joule", "length_in_metre"]

#: Energy units understood by :meth:`PhysicalScales.energy_to_engine`: value of 1 unit in joule.
#: "K" means k_B·(1 kelvin); "rad/s" means ħ·(1 rad/s); "Hz" means h·(1 Hz).
ENERGY_UNITS: dict[str, float] = {
    "J": 1.0,
    "eV": _c.electron_volt,
    "meV": 1e-3 * _c.electron_volt,
    "K": _c.Boltzmann,
    "mK": 1e-3 * _c.Boltzmann,
    "rad/s": _c.hbar,
    "Hz": _c.h,
    "GHz": 1e9 * _c.h,
}

#: Length units understood by :meth:`PhysicalScales.length_to_engine`: value of 1 unit in metre.
LENGTH_UNITS: dict[str, float] = {"m": 1.0, "nm": 1e-9, "angstrom": 1e-10, "Å": 1e-10}

_G_PER_CM3 = 1e3  # kg/m³ in 1 g/cm³
_KM_PER_S = 1e3  # m/s in 1 km/s


def energy_in_joule(unit: str) -> float:
    """Size of one ``unit`` of energy in joule (see :data:`ENERGY_UNITS`)."""
    if unit not in ENERGY_UNITS:
        raise InputError(f"unit = {unit!r}: must be one of {', '.join(ENERGY_UNITS)}{suggest(unit, ENERGY_UNITS)}")
    return ENERGY_UNITS[unit]


def length_in_metre(unit: str) -> float:
    """Size of one ``unit`` of length in metre (see :data:`LENGTH_UNITS`)."""
    if unit not in LENGTH_UNITS:
        raise InputError(f"unit = {unit!r}: must be one of {', '.join(LENGTH_UNITS)}{suggest(unit, LENGTH_UNITS)}")
    return LENGTH_UNITS[unit]


def _positive(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} = {value!r}: must be a finite number > 0") from None
    if not (math.isfinite(x) and x > 0):
        raise InputError(f"{name} = {value!r}: must be a finite number > 0")
    return x


def _finite(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} = {value!r}: must be a finite number") from None
    if not math.isfinite(x):
        raise InputError(f"{name} = {value!r}: must be a finite number")
    return x


@dataclass(frozen=True)
class PhysicalScales:
    """The physical scales that fix the engine's units.

    Fields (all finite and > 0):

    * ``E_star_K`` — energy unit E* of the engine (the starting block's level scale), in kelvin
      (k_B·E_star_K joule). Use :meth:`from_E_star_eV` to give it in eV.
    * ``L1_angstrom`` — length unit L_1 (starting block size), in Å.
    * ``rho_g_cm3`` — mass density ρ, in g/cm³.
    * ``ct_km_s``, ``cl_km_s`` — transverse and longitudinal sound velocities, in km/s;
      c_l/c_t must exceed √(4/3) (positive bulk modulus, BRIEF §1b).
    * ``T_star_eV`` — stress (coupling-energy) scale T* of a block, in eV.
    """

    E_star_K: float
    L1_angstrom: float
    rho_g_cm3: float
    ct_km_s: float
    cl_km_s: float
    T_star_eV: float

    def __post_init__(self):
        for name in ("E_star_K", "L1_angstrom", "rho_g_cm3", "ct_km_s", "cl_km_s", "T_star_eV"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        if self.cl_km_s / self.ct_km_s <= math.sqrt(4.0 / 3.0):
            raise InputError(
                f"cl_km_s = {self.cl_km_s!r}: must exceed sqrt(4/3)·ct_km_s = "
                f"{math.sqrt(4.0 / 3.0) * self.ct_km_s:.6g} (positive bulk modulus)"
            )

    @classmethod
    def from_E_star_eV(cls, E_star_eV: float, **fields) -> "PhysicalScales":
        """Same as the constructor, with the energy unit E* given in eV instead of K."""
        e_star = _positive("E_star_eV", E_star_eV)
        return cls(E_star_K=e_star * _c.electron_volt / _c.Boltzmann, **fields)

    # ------------------------------------------------------------------ derived scales
    @property
    def cl_over_ct(self) -> float:
        """c_l/c_t (dimensionless), the only velocity information Λ (Eq. A15 of [ZL]) needs."""
        return self.cl_km_s / self.ct_km_s

    @property
    def E_star_J(self) -> float:
        """E* in joule: k_B · E_star_K."""
        return self.E_star_K * _c.Boltzmann

    def coupling_g(self) -> float:
        """Dimensionless coupling g = T*² / (ρ c_t² L_1³ E*) (BRIEF §2), all factors in SI units.

        T* [J] = T_star_eV · e, ρ [kg/m³] = 1000 · rho_g_cm3, c_t [m/s] = 1000 · ct_km_s,
        L_1 [m] = 1e-10 · L1_angstrom, E* [J] = k_B · E_star_K.
        """
        t_star = self.T_star_eV * _c.electron_volt
        rho = self.rho_g_cm3 * _G_PER_CM3
        ct = self.ct_km_s * _KM_PER_S
        l1 = self.L1_angstrom * LENGTH_UNITS["angstrom"]
        return t_star**2 / (rho * ct**2 * l1**3 * self.E_star_J)

    # ------------------------------------------------------------------ energies
    def energy_to_engine(self, value: float, unit: str) -> float:
        """Energy ``value`` in ``unit`` (see :data:`ENERGY_UNITS`) → engine units (units of E*)."""
        return _finite("value", value) * energy_in_joule(unit) / self.E_star_J

    def energy_from_engine(self, value: float, unit: str) -> float:
        """Engine energy (units of E*) → ``unit``. Inverse of :meth:`energy_to_engine`."""
        return _finite("value", value) * self.E_star_J / energy_in_joule(unit)

    def temperature_to_engine(self, T_K: float) -> float:
        """Temperature in K → engine units (k_B = 1, units of E*): T_K / E_star_K. Must be ≥ 0."""
        t = _finite("T_K", T_K)
        if t < 0:
            raise InputError(f"T_K = {T_K!r}: must be a finite number ≥ 0")
        return t / self.E_star_K

    def temperature_from_engine(self, T: float) -> float:
        """Engine temperature (units of E*) → K."""
        return _finite("T", T) * self.E_star_K

    def frequency_to_engine(self, omega_rad_s: float) -> float:
        """Angular frequency ω in rad/s → engine units (ħ = 1, units of E*): ħω / (k_B E_star_K)."""
        return _finite("omega_rad_s", omega_rad_s) * _c.hbar / self.E_star_J

    def frequency_from_engine(self, omega: float) -> float:
        """Engine angular frequency (units of E*) → rad/s."""
        return _finite("omega", omega) * self.E_star_J / _c.hbar

    # ------------------------------------------------------------------ lengths
    def length_to_engine(self, value: float, unit: str = "angstrom") -> float:
        """Length ``value`` in ``unit`` (see :data:`LENGTH_UNITS`) → engine units (units of L_1)."""
        return _finite("value", value) * length_in_metre(unit) / (self.L1_angstrom * LENGTH_UNITS["angstrom"])

    def length_from_engine(self, value: float, unit: str = "angstrom") -> float:
        """Engine length (units of L_1) → ``unit``."""
        return _finite("value", value) * self.L1_angstrom * LENGTH_UNITS["angstrom"] / length_in_metre(unit)

    # ------------------------------------------------------------------ stresses
    def stress_to_engine(self, value_eV: float) -> float:
        """Stress-operator matrix element (an energy per unit strain, e.g. γ) in eV → units of T*."""
        return _finite("value_eV", value_eV) / self.T_star_eV

    def stress_from_engine(self, value: float) -> float:
        """Stress in units of T* → eV."""
        return _finite("value", value) * self.T_star_eV
