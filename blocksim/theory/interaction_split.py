"""The interaction part of a super block's response, split into resonant and non-resonant parts.

The interaction part of Eq. (3.7) of [ZL] is δIm χ = Im χ[super block at g] − Im χ[members at g = 0]
(the single-block sum, Eq. 3.4). Both sides are sums over transitions, so a partition of the
transitions of each side gives an exact split δIm χ = δIm χ_res + δIm χ_nonres:

* resonant: at g, the ground → state transitions of states in a resonant cluster or on a dressed
  member (:meth:`blocksim.spectra.Spectrum.resonant_mask`) and the dressed members' own
  excited-initial transitions; at g = 0, the members' ground → |s,m⟩ transitions of the single
  excitations that the g solution put in a cluster or dressed (``Spectrum.resonant_singles``) and the
  dressed members' excited-initial transitions;
* non-resonant: all others (first-order perturbation theory, Eq. 3.2).

The resonant part splits again into the cluster part (:func:`cluster_masks`: states and singles in a
resonant cluster) and the dressed-member rest.

Units: ω, T, line width in E*; tensors are the 6×6 Mandel band averages of Im χ (units T*²/E*,
per super block, volume 1).
"""

from __future__ import annotations

import numpy as np

from .. import response
from ..errors import InputError
from ..spectra import Spectrum, SuperBlock

__all__ = ["member_transitions_split", "band_tensor", "split_band_tensors", "cluster_masks"]


def member_transitions_split(sb: SuperBlock, spectrum_g: Spectrum, temperatures):
    """The members' own transitions at g = 0 and their resonant mask from the solution at g.

    Parameters
    ----------
    sb : SuperBlock
        The super block (its raw members are used; the coupling is ignored).
    spectrum_g : Spectrum
        The solution at g whose ``resonant_singles`` and ``dressed_members`` define the split.
    temperatures : array_like
        Temperatures [n_T], units E*.

    Returns
    -------
    (Transitions, numpy.ndarray)
        Ground → (s, m ≥ 1) transitions first (member-major), then each member's excited → other
        transitions (populations p_m^(s)(T)); the bool mask [M] marks the resonant ones.
    """
    temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
    e, st = sb.energies, sb.stress
    nb, nl = e.shape
    p = response.boltzmann(e, temps)  # [n_T, N, n]
    ss, mm = np.meshgrid(np.arange(nb), np.arange(1, nl), indexing="ij")
    ss, mm = ss.ravel(), mm.ravel()
    om1, amp1, pop1 = e[ss, mm], st[ss, :, 0, mm], p[:, ss, 0]
    s2, m2, k2 = np.meshgrid(np.arange(nb), np.arange(1, nl), np.arange(nl), indexing="ij")
    sel = m2 != k2
    s2, m2, k2 = s2[sel], m2[sel], k2[sel]
    om2, amp2, pop2 = e[s2, k2] - e[s2, m2], st[s2, :, m2, k2], p[:, s2, m2]
    singles = np.zeros((nb, nl - 1), dtype=bool) if spectrum_g.resonant_singles is None else spectrum_g.resonant_singles
    dressed = np.zeros(nb, dtype=bool) if spectrum_g.dressed_members is None else spectrum_g.dressed_members
    if singles.shape != (nb, nl - 1):
        raise InputError(f"resonant_singles shape = {singles.shape}: must be {(nb, nl - 1)}")
    mask = np.concatenate([singles[ss, mm - 1], dressed[s2]])
    trans = response.Transitions(omega=np.concatenate([om1, om2]), amp=np.concatenate([amp1, amp2]),
                                 population=np.concatenate([pop1, pop2], axis=1), temperatures=temps)
    return trans, mask


def _subset(trans: response.Transitions, mask) -> response.Transitions:
    return response.Transitions(omega=trans.omega[mask], amp=trans.amp[mask], population=trans.population[:, mask],
                                temperatures=trans.temperatures, volume=trans.volume)


def band_tensor(trans: response.Transitions, quantity: str, omegas, width: float, line: str = "gaussian"):
    """Band average over ``omegas`` of the 6×6 tensor of ``quantity`` (Im χ or Re χ) at the first temperature.

    Parameters
    ----------
    trans : Transitions
        Transitions (any solver).
    quantity : str
        ``"im_chi"`` or ``"re_chi"`` (:func:`blocksim.response.chi_tensor`).
    omegas : array_like
        Probe frequencies of the band, units E*.
    width : float
        Line width (σ of the Gaussian), units E*.
    line : str
        Line shape.

    Returns
    -------
    numpy.ndarray
        [6, 6] Mandel tensor; zeros for an empty set of transitions.
    """
    if trans.omega.size == 0:
        return np.zeros((6, 6))
    t = response.chi_tensor(trans, np.asarray(omegas, dtype=float), quantity=quantity, line=line, width=width)
    return t[0].mean(axis=0)


def split_band_tensors(sb: SuperBlock, spectrum_g: Spectrum, temperature: float, omegas, width: float) -> dict:
    """Band Im χ tensors of the super block at g and of its members at g = 0, split by resonance.

    Parameters
    ----------
    sb : SuperBlock
        The super block (members as drawn and rotated).
    spectrum_g : Spectrum
        Its solution at coupling g.
    temperature : float
        Temperature, units E*.
    omegas : array_like
        Probe band (frequencies averaged), units E*.
    width : float
        Gaussian σ, units E*.

    Returns
    -------
    dict
        ``im_g``, ``im_0`` (full), ``im_g_res``, ``im_g_non``, ``im_0_res``, ``im_0_non`` (each [6, 6])
        and ``re_0`` (band Re χ of the members). ``im_g_res + im_g_non = im_g`` and
        ``im_0_res + im_0_non = im_0`` up to rounding. ``im_g_cluster``, ``im_0_cluster``: the cluster
        part of the resonant tensors (:func:`cluster_masks`); the rest of them is the dressed members'.
        ``im_g_cluster_sd``, ``im_0_cluster_sd``: the part of the cluster tensors from clusters holding a
        double (single–double resonances).
    """
    temps = [float(temperature)]
    tg = spectrum_g.transitions(temps)
    mg = spectrum_g.resonant_mask()
    t0, m0 = member_transitions_split(sb, spectrum_g, temps)
    cl_g, cl_0 = cluster_masks(sb, spectrum_g, tg.omega.size, t0.omega.size)
    sd_g, sd_0 = cluster_masks(sb, spectrum_g, tg.omega.size, t0.omega.size, with_doubles=True)
    out = {
        "im_g": band_tensor(tg, "im_chi", omegas, width),
        "im_0": band_tensor(t0, "im_chi", omegas, width),
        "im_g_res": band_tensor(_subset(tg, mg), "im_chi", omegas, width),
        "im_g_non": band_tensor(_subset(tg, ~mg), "im_chi", omegas, width),
        "im_0_res": band_tensor(_subset(t0, m0), "im_chi", omegas, width),
        "im_0_non": band_tensor(_subset(t0, ~m0), "im_chi", omegas, width),
        "re_0": band_tensor(t0, "re_chi", omegas, width),
        "im_g_cluster": band_tensor(_subset(tg, cl_g), "im_chi", omegas, width),
        "im_0_cluster": band_tensor(_subset(t0, cl_0), "im_chi", omegas, width),
        "im_g_cluster_sd": band_tensor(_subset(tg, sd_g), "im_chi", omegas, width),
        "im_0_cluster_sd": band_tensor(_subset(t0, sd_0), "im_chi", omegas, width),
    }
    return out


def cluster_masks(sb: SuperBlock, spectrum_g: Spectrum, m_g: int, m_0: int, *, with_doubles: bool = False):
    """The cluster part of the resonant transitions: ``(mask at g [m_g], mask at g = 0 [m_0])``.

    At g: ground → a state in a resonant cluster (``Spectrum.cluster_states``); at g = 0: the members'
    ground → |s,m⟩ of the single excitations in a cluster (``Spectrum.cluster_singles``). Both are subsets
    of the resonant masks; the resonant rest is the dressed members' (their non-cluster excitations and
    their excited-initial transitions). ``with_doubles``: only the clusters that hold a double excitation
    (single–double resonances). All False without the cluster bookkeeping.
    """
    nb, nl = sb.n_blocks, sb.n_levels
    cl_g = np.zeros(m_g, dtype=bool)
    cl_0 = np.zeros(m_0, dtype=bool)
    states = spectrum_g.double_cluster_states if with_doubles else spectrum_g.cluster_states
    singles = spectrum_g.double_cluster_singles if with_doubles else spectrum_g.cluster_singles
    if states is not None:
        states = np.asarray(states[1:], dtype=bool)
        cl_g[:states.size] = states
    if singles is not None:
        cl_0[:nb * (nl - 1)] = np.asarray(singles, dtype=bool).ravel()
    return cl_g, cl_0
