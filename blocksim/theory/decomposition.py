"""Decomposition of the super-block absorption into the terms of Eq. (3.4)–(3.7) of [ZL].

All rates are per unit strain amplitude squared, (Ak)² = 1, in engine units (energies and ω in E*,
stresses in T*, ρ c_t² = 1/g for a lattice spacing 1, BRIEF §2). For a set of transitions the
absorption rate of Eq. (3.1) is

    Ė(ω) = −2 V ω (1 − e^{−βω}) Im χ̃(T, ω) = 2π ω (1 − e^{−βω}) Σ_k p_k (e·amp_k)² δ(ω − ω_k),

independent of the volume V (Im χ̃ carries 1/V). The numerical terms are

* Ė^super — the solved super block (:class:`blocksim.spectra.Spectrum`);
* Ė^(1) — the members on their own (Eq. 3.4; equals Ė^super at g = 0);
* Ė^(2)_num — the ΔΛ term: the strain changes the separations r → r + e·r, so Λ changes by ΔΛ
  (Eq. 2.17, :func:`blocksim.model.coupling.delta_lambda`) and the operator Σ_{s≠s'} ΔΛ^(ss') T^(s) T^(s')
  creates pairs |s m, s' m'⟩ out of the ground state with amplitude 2 u^(s)·gΔΛ·u^(s'), at
  ω = E_m^(s) + E_m'^(s') (the convolution structure of Eq. 3.5). Populations: p_0^(s) p_0^(s')
  (independent members); thermally activated pair transitions are omitted (documented approximation);
* Ė^int_num = Ė^super − Ė^(1), the interaction part, which Eq. (3.7) calls V̇.

Next to them the analytic estimates of [ZL]: Ė^(2) (Eq. 3.5), Ė^(3) with a user K (Eq. 3.6) and V̇
(Eq. 3.7), evaluated with the members' ensemble-averaged Im χ̃ and Re χ̃ (per block volume) through
:mod:`blocksim.theory.recursion`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import response
from . import recursion
from ..model.coupling import alpha_from_ratio, delta_lambda
from ..errors import InputError
from ..spectra import Spectrum, SuperBlock
from ..model.tensors import direction_strains, from_mandel, to_mandel4

__all__ = [
    "absorption_rate_spectrum",
    "members_transitions",
    "delta_lambda_pair_transitions",
    "decompose",
]


def absorption_rate_spectrum(trans: response.Transitions, omega, strain, *, line="lorentzian", width=None):
    """Ė(T, ω) ``[n_T, n_ω]`` of Eq. (3.1) for the transitions, strain Mandel vector ``strain``, (Ak)² = 1."""
    im_tilde = response.im_chi_tilde(trans, omega, strain, line=line, width=width)
    omega = np.asarray(omega, dtype=float)
    factor = response.thermal_factor(omega, trans.temperatures)
    return -2.0 * trans.volume * omega[None, :] * factor * im_tilde


def members_transitions(sb: SuperBlock, temperatures) -> response.Transitions:
    """All members' own transitions (uncoupled super block), for Ė^(1) of Eq. (3.4)."""
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    parts = [response.transitions_from_levels(sb.energies[s], sb.stress[s], temps) for s in range(sb.n_blocks)]
    return parts[0].concat(parts[1:])


def delta_lambda_pair_transitions(sb: SuperBlock, strain_tensor, temperatures) -> response.Transitions:
    """Pair-creation transitions of the ΔΛ operator for a uniform strain ``strain_tensor`` [3, 3].

    Returned as :class:`response.Transitions` whose ``amp`` is chosen so that the strain vector
    (1, 0, 0, 0, 0, 0) projects the matrix element: amp[:, 0] = ⟨s m, s' m'|Σ gΔΛ T T|0⟩ (the
    operator already contains the strain). Use with ``strain = e0 = [1, 0, 0, 0, 0, 0]``.
    """
    e = np.asarray(strain_tensor, dtype=float)
    if e.shape != (3, 3):
        raise InputError(f"strain_tensor shape = {e.shape}: must be (3, 3)")
    e = 0.5 * (e + e.T)
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    nb = sb.n_blocks
    pos = sb.positions.astype(float)
    u = np.moveaxis(sb.stress[:, :, 1:, 0], 1, 2)  # [N, n-1, 6]
    p0 = np.stack([response.boltzmann(sb.energies[s], temps)[:, 0] for s in range(nb)], axis=1)  # [n_T, N]
    omegas, amps, pops = [], [], []
    for s in range(nb):
        for t in range(s + 1, nb):
            r = pos[s] - pos[t]
            dlam = to_mandel4(delta_lambda(r, e @ r, sb.cl_over_ct, sb.form)) * sb.coupling_g
            # ordered pairs (s,t) and (t,s) give the same element: factor 2
            v = 2.0 * np.einsum("ma,ab,pb->mp", u[s], dlam, u[t])
            omegas.append((sb.energies[s, 1:, None] + sb.energies[t, None, 1:]).ravel())
            amps.append(v.ravel())
            pops.append(np.repeat((p0[:, s] * p0[:, t])[:, None], v.size, axis=1))
    amp = np.zeros((sum(a.size for a in amps), 6))
    amp[:, 0] = np.concatenate(amps)
    return response.Transitions(
        omega=np.concatenate(omegas), amp=amp, population=np.concatenate(pops, axis=1), temperatures=temps
    )


def decompose(
    sb: SuperBlock,
    spectrum: Spectrum,
    omega,
    temperatures,
    *,
    direction=(0.0, 0.0, 1.0),
    polarization=None,
    k_constant: float = 1.0,
    line: str = "lorentzian",
    width: float | None = None,
) -> dict:
    """Split the super-block absorption into the terms of Eq. (3.4)–(3.7), numerically and analytically.

    omega [n_ω] and temperatures [n_T] in units of E*. Returns a dict of ``[n_T, n_ω]`` arrays for
    ``"l"`` and ``"t"`` (longitudinal / transverse along ``direction``):
    ``super``, ``e1`` (Eq. 3.4), ``e2_num`` (ΔΛ term, numerical), ``interaction_num`` (super − e1),
    ``e2_eq35``, ``e3_eq36`` (with K = ``k_constant``), ``v_eq37``; plus ``n0`` and ``alpha``.
    The analytic terms use the ensemble average of the members' Im χ̃ and Re χ̃ (per member volume 1)
    with 1/(ρ c_t²) = g and 1/(ρ c_l²) = g (c_t/c_l)², and a convolution grid covering ±2·max(ω).
    """
    omega = np.asarray(omega, dtype=float)
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    if omega.ndim != 1 or omega.size == 0:
        raise InputError("omega: must be a non-empty 1-D grid")
    e_l, e_t = direction_strains(direction, polarization)
    trans_super = spectrum.transitions(temps)
    trans_members = members_transitions(sb, temps)
    alpha = alpha_from_ratio(sb.cl_over_ct)
    n0_eff = round(sb.n_blocks ** (1.0 / 3.0), 6)
    g = sb.coupling_g
    out: dict = {"n0": n0_eff, "alpha": alpha}
    # a dense symmetric grid for the convolution integral of Eq. (3.5)/(3.6)
    wmax = 2.0 * float(np.max(np.abs(omega)))
    grid = np.linspace(-wmax, wmax, 801)
    ensemble = {}
    for name, strain in (("l", e_l), ("t", e_t)):
        ensemble[name] = (
            response.im_chi_tilde(trans_members, grid, strain, line=line, width=width) / sb.n_blocks,
            response.re_chi(trans_members, omega, strain, line=line, width=width) / sb.n_blocks,
            response.im_chi_tilde(trans_members, omega, strain, line=line, width=width) / sb.n_blocks,
        )
    for name, strain in (("l", e_l), ("t", e_t)):
        e_super = absorption_rate_spectrum(trans_super, omega, strain, line=line, width=width)
        e1 = absorption_rate_spectrum(trans_members, omega, strain, line=line, width=width)
        strain_tensor = from_mandel(strain)
        pair = delta_lambda_pair_transitions(sb, strain_tensor, temps)
        unit = np.zeros(6)
        unit[0] = 1.0
        e2_num = absorption_rate_spectrum(pair, omega, unit, line=line, width=width)
        out[name] = {"super": e_super, "e1": e1, "e2_num": e2_num, "interaction_num": e_super - e1}
    # analytic estimates, per temperature
    for name in ("l", "t"):
        im_grid_t, _, im_t = ensemble["t"]
        _, re_a, im_a = ensemble[name]
        conv = np.stack([recursion.self_convolution(grid, im_grid_t[i], omega) for i in range(len(temps))])
        x = np.where(im_t != 0, ensemble["l"][2] / np.where(im_t != 0, im_t, 1.0) - 2.0, 0.0)
        rho_ct2 = 1.0 / g if g > 0 else math.inf
        rho_c2 = rho_ct2 * (sb.cl_over_ct**2 if name == "l" else 1.0)
        e2, e3, v = [], [], []
        for i, temp in enumerate(temps):
            if g > 0 and n0_eff > 1:
                e2_l, e2_t = recursion.e_dot_2(omega, temp, conv[i], alpha, x[i], n0_eff, rho_ct2=rho_ct2)
                e2.append(e2_l if name == "l" else e2_t)
                e3.append(recursion.e_dot_3(k_constant, omega, temp, conv[i], n0_eff, rho_ct2=rho_ct2))
                v.append(recursion.v_dot(omega, temp, im_a[i], re_a[i], n0_eff, rho_c2=rho_c2))
            else:
                e2.append(np.zeros_like(omega)), e3.append(np.zeros_like(omega)), v.append(np.zeros_like(omega))
        out[name].update({"e2_eq35": np.array(e2), "e3_eq36": np.array(e3), "v_eq37": np.array(v)})
    return out
