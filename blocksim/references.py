"""The single bibliography of blocksim. Cite by key, e.g. "Eq. (A15) of [ZL]".

Every docstring that names an equation number says which paper it belongs to with one of these keys.
Unqualified equation numbers in blocksim always refer to [ZL].
"""

from __future__ import annotations

__all__ = ["REFERENCES", "cite"]

#: key → full citation.
REFERENCES: dict[str, str] = {
    "ZL": (
        "D. Zhou and A. J. Leggett, \"A Generic Microscopic Theory for the Universality of TTLS Model "
        "Meissner-Berret Ratio in Low-Temperature Glasses\", Univ. of Illinois (dated June 26, 2021); "
        "the copy in "
        "shared/paper/zhou-leggett-meissner-berret-ratio.md: generic coupled block model, "
        "Eqs. (2.1)-(5.10), Appendix A (A1)-(A16), Sec. IV materials table."
    ),
    "JL75": "J. Joffrin and A. Levelut, J. Phys. (Paris) 36, 811 (1975).",
    "MB88": "M. Meissner and J. F. Berret, Z. Phys. B: Condens. Matter 70, 65-72 (1988).",
    "PLT02": "R. O. Pohl, X. Liu, and E. Thompson, Rev. Mod. Phys. 74, 991 (2002).",
    "VL11": "D. C. Vural and A. J. Leggett, J. Non-Cryst. Solids 357, 3528 (2011).",
    "AHV72": "P. W. Anderson, B. I. Halperin, and C. M. Varma, Philos. Mag. 25, 1 (1972).",
    "P72": "W. A. Phillips, J. Low Temp. Phys. 7, 351 (1972).",
    "P87": "W. A. Phillips, Rep. Prog. Phys. 50, 1657 (1987).",
    "LL8": (
        "L. D. Landau and E. M. Lifshitz, Theory of Elasticity, 3rd ed. (Pergamon, Oxford, 1986), "
        "Sec. 8 (Kelvin's solution: deformation of an infinite isotropic medium by a point force)."
    ),
    "CODATA18": (
        "E. Tiesinga, P. J. Mohr, D. B. Newell, and B. N. Taylor, CODATA recommended values of the "
        "fundamental physical constants: 2018, Rev. Mod. Phys. 93, 025010 (2021) (via scipy.constants)."
    ),
}


def cite(key: str) -> str:
    """Full citation for ``key`` (e.g. ``"ZL"``); unknown keys raise :class:`~blocksim.errors.InputError`."""
    from .errors import InputError, suggest

    if key not in REFERENCES:
        raise InputError(f"key = {key!r}: must be one of {', '.join(REFERENCES)}{suggest(key, REFERENCES)}")
    return REFERENCES[key]
