"""The response layer: transitions → Im χ̃, Im χ, Re χ, absorption rate (Eq. 2.9–2.12, 3.1 of [ZL]).

Every consumer of spectra (single blocks, pools, super blocks from any solver) goes through
:class:`Transitions`; :mod:`~blocksim.response.chi` turns them into susceptibilities.
Imports only the model layer.
"""

from .chi import (
    LINES,
    Transitions,
    absorption_rate,
    boltzmann,
    chi_components,
    chi_tensor,
    chi_tensors,
    im_chi,
    im_chi_tilde,
    kramers_kronig_re,
    line_profiles,
    mb_ratio,
    powder_directions,
    re_chi,
    thermal_factor,
    transitions_from_levels,
)

__all__ = [
    "LINES",
    "Transitions",
    "boltzmann",
    "thermal_factor",
    "transitions_from_levels",
    "line_profiles",
    "im_chi_tilde",
    "im_chi",
    "re_chi",
    "chi_tensor",
    "chi_tensors",
    "kramers_kronig_re",
    "powder_directions",
    "chi_components",
    "absorption_rate",
    "mb_ratio",
]
