"""The 13-material Meissner–Berret table of Sec. IV of [ZL] and its least-squares fits.

Data: ``blocksim/data/materials_mb88.csv``, the table of Sec. IV of [ZL] (data of [MB88]) exactly as
printed: γ_l, γ_t in eV, c_l, c_t in km/s, MB_exp = γ_l/γ_t and MB_theo = c_l/c_t (both rounded to
2 decimals as printed) and the printed deviation (theo − exp)/exp in percent. The printed deviations
follow from the printed MB columns (to the last printed digit, sometimes truncated) except V52, whose
10.4 % uses the unrounded c_l/c_t = 1.8444 (the printed columns give 10.18 %).

The paper's fit is a least-squares line through the origin, MB_theo = slope · MB_exp, i.e.
``slope = Σ x y / Σ x²`` with x = MB_exp, y = MB_theo, and r is Pearson's linear correlation coefficient
of (x, y). Its printed results are slope 1.102, r = 0.261 (13 materials) and 1.061, r = 0.745 (10
materials, without As2S3, PMMA, PS).

Which columns reproduce the paper (checked, see tests/test_materials.py)
-----------------------------------------------------------------------
* ``convention="printed"`` (the default): the rounded MB_exp and MB_theo columns as printed.
  10 materials: slope 1.06147, r = 0.74506 → 1.061 and 0.745, both exactly as printed.
  13 materials: slope 1.10272, r = 0.26043. The printed 1.102 matches the slope truncated (rounding
  gives 1.103), and the printed 0.261 is 0.0006 above the computed r (neither rounding nor truncation
  gives it). This is the closest of the variants tried.
* ``convention="recomputed"``: ratios recomputed from γ_l/γ_t and c_l/c_t. 10 materials: slope
  1.06190 (rounds to 1.062, not 1.061), r = 0.74496 (0.745); 13 materials: slope 1.10271, r = 0.27619
  (far from 0.261). It does not reproduce the paper.
So the paper's numbers come from the printed, 2-decimal columns; the 13-material r (and the last digit
of the 13-material slope) cannot be reproduced exactly from the printed table.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import InputError, suggest

__all__ = [
    "Material",
    "FitResult",
    "MaterialsReport",
    "CONVENTIONS",
    "DEFAULT_EXCLUDE",
    "PAPER_FITS",
    "load_materials",
    "fit_through_origin",
    "correlation",
    "materials_report",
    "add_arguments",
    "command",
]

#: How MB_exp and MB_theo are taken: the printed 2-decimal columns, or ratios recomputed from γ and c.
CONVENTIONS = ("printed", "recomputed")
#: The three materials the paper drops for its second fit (deviation > 20 %, Sec. IV of [ZL]).
DEFAULT_EXCLUDE = ("As2S3", "PMMA", "PS")

_DATA_FILE = "materials_mb88.csv"

#: The fits printed in Sec. IV of [ZL]: (slope, r) for all 13 materials and for the 10 without DEFAULT_EXCLUDE.
PAPER_FITS = {"all": (1.102, 0.261), "subset": (1.061, 0.745)}


@dataclass(frozen=True)
class Material:
    """One row of the Sec. IV table of [ZL] (data of [MB88]), as printed.

    gamma_l_eV, gamma_t_eV: TTLS deformation potentials γ_l, γ_t in eV. cl_km_s, ct_km_s: sound
    velocities in km/s. mb_exp = γ_l/γ_t and mb_theo = c_l/c_t as printed (2 decimals);
    deviation_percent = (mb_theo − mb_exp)/mb_exp · 100 as printed.
    """

    material: str
    gamma_l_eV: float
    gamma_t_eV: float
    mb_exp: float
    cl_km_s: float
    ct_km_s: float
    mb_theo: float
    deviation_percent: float

    @property
    def mb_exp_recomputed(self) -> float:
        """γ_l/γ_t from the printed γ's (unrounded)."""
        return self.gamma_l_eV / self.gamma_t_eV

    @property
    def mb_theo_recomputed(self) -> float:
        """c_l/c_t from the printed velocities (unrounded)."""
        return self.cl_km_s / self.ct_km_s

    def ratios(self, convention: str = "printed") -> tuple[float, float]:
        """(MB_exp, MB_theo) in the given convention (see :data:`CONVENTIONS`)."""
        _check_convention(convention)
        if convention == "printed":
            return self.mb_exp, self.mb_theo
        return self.mb_exp_recomputed, self.mb_theo_recomputed


@dataclass(frozen=True)
class FitResult:
    """Least-squares line through the origin y = slope·x and Pearson r, over ``n`` materials."""

    slope: float
    r: float
    n: int
    materials: tuple[str, ...]


@dataclass(frozen=True)
class MaterialsReport:
    """The table and both fits of Sec. IV of [ZL]: all materials and all but ``excluded``."""

    materials: tuple[Material, ...]
    convention: str
    excluded: tuple[str, ...]
    fit_all: FitResult
    fit_subset: FitResult


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise InputError(
            f"convention = {convention!r}: must be one of {', '.join(CONVENTIONS)}{suggest(convention, CONVENTIONS)}"
        )


def load_materials() -> tuple[Material, ...]:
    """Read the 13 rows of ``blocksim/data/materials_mb88.csv`` (lines starting with ``#`` are comments)."""
    text = resources.files("blocksim").joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    rows = []
    for rec in csv.DictReader(lines):
        rows.append(
            Material(
                material=rec["material"],
                **{k: float(v) for k, v in rec.items() if k != "material"},
            )
        )
    return tuple(rows)


def fit_through_origin(x, y) -> float:
    """Least-squares slope of y = slope·x (no intercept): ``Σ x_i y_i / Σ x_i²``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 1:
        raise InputError(f"x, y shapes = {x.shape}, {y.shape}: must be equal 1-D shapes with ≥ 1 point")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("x, y = (contain NaN/inf): must be finite")
    denom = float(x @ x)
    if denom == 0.0:
        raise InputError("x = all zeros: must have at least one non-zero value")
    return float(x @ y) / denom


def correlation(x, y) -> float:
    """Pearson's linear correlation coefficient r = cov(x, y)/(σ_x σ_y) (centred)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise InputError(f"x, y shapes = {x.shape}, {y.shape}: must be equal 1-D shapes with ≥ 2 points")
    dx = x - x.mean()
    dy = y - y.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denom == 0.0:
        raise InputError("x, y = constant: must vary to define a correlation")
    return float(dx @ dy) / denom


def _fit(rows, convention) -> FitResult:
    pairs = np.array([m.ratios(convention) for m in rows])
    x, y = pairs[:, 0], pairs[:, 1]
    return FitResult(
        slope=fit_through_origin(x, y), r=correlation(x, y), n=len(rows), materials=tuple(m.material for m in rows)
    )


def materials_report(exclude=DEFAULT_EXCLUDE, convention: str = "printed") -> MaterialsReport:
    """Fits MB_theo = slope·MB_exp (through the origin) with Pearson r, over all 13 materials and over
    those not in ``exclude`` (default: As2S3, PMMA, PS as in Sec. IV of [ZL])."""
    _check_convention(convention)
    materials = load_materials()
    names = [m.material for m in materials]
    exclude = tuple(exclude)
    for name in exclude:
        if name not in names:
            raise InputError(f"exclude = {name!r}: must be one of {', '.join(names)}{suggest(name, names)}")
    subset = [m for m in materials if m.material not in exclude]
    if len(subset) < 2:
        raise InputError(f"exclude = {list(exclude)}: must leave at least 2 materials")
    return MaterialsReport(
        materials=materials,
        convention=convention,
        excluded=exclude,
        fit_all=_fit(materials, convention),
        fit_subset=_fit(subset, convention),
    )


# ------------------------------------------------------------------------------------ CLI
def add_arguments(parser) -> None:
    """Options of ``blocksim materials``."""
    parser.add_argument("--csv", metavar="PATH", help="also write the table (with recomputed ratios) to PATH")
    parser.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default="printed",
        help="printed 2-decimal MB columns (reproduces the paper) or ratios recomputed from γ and c",
    )
    parser.add_argument(
        "--exclude",
        nargs="*",
        default=list(DEFAULT_EXCLUDE),
        metavar="NAME",
        help="materials left out of the second fit (default: As2S3 PMMA PS)",
    )


def _format_report(rep: MaterialsReport) -> str:
    out = [
        f"Meissner-Berret ratio, 13 glasses ([MB88] via Zhou & Leggett Sec. IV); convention: {rep.convention}",
        f"{'material':<10} {'MB_exp':>7} {'MB_theo':>8} {'deviation':>10}",
    ]
    for m in rep.materials:
        x, y = m.ratios(rep.convention)
        out.append(f"{m.material:<10} {x:7.3f} {y:8.3f} {100.0 * (y - x) / x:+9.2f}%")
    default_subset = set(rep.excluded) == set(DEFAULT_EXCLUDE)
    for key, label, fit in (
        ("all", "all", rep.fit_all),
        ("subset", "without " + (", ".join(rep.excluded) or "none"), rep.fit_subset),
    ):
        line = f"fit MB_theo = {fit.slope:.4f} * MB_exp, r = {fit.r:.4f}  ({fit.n} materials, {label})"
        if key == "all" or default_subset:
            line += f"  [paper: {PAPER_FITS[key][0]:.3f}, r = {PAPER_FITS[key][1]:.3f}]"
        out.append(line)
    return "\n".join(out)


def _write_csv(rep: MaterialsReport, path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["# convention", rep.convention])
        w.writerow(["material", "mb_exp", "mb_theo", "deviation_percent", "mb_exp_recomputed", "mb_theo_recomputed"])
        for m in rep.materials:
            x, y = m.ratios(rep.convention)
            w.writerow([m.material, f"{x:.6g}", f"{y:.6g}", f"{100 * (y - x) / x:.4g}",
                        f"{m.mb_exp_recomputed:.6g}", f"{m.mb_theo_recomputed:.6g}"])
        for label, fit in (("all", rep.fit_all), ("subset", rep.fit_subset)):
            w.writerow([f"# fit_{label}", f"slope={fit.slope:.6f}", f"r={fit.r:.6f}", f"n={fit.n}"])


def command(args) -> int:
    """``blocksim materials``: print the table and the two fits; ``--csv PATH`` also writes a CSV."""
    rep = materials_report(exclude=args.exclude, convention=args.convention)
    print(_format_report(rep))
    if args.csv:
        try:
            _write_csv(rep, args.csv)
        except OSError as exc:
            raise InputError(f"csv = {args.csv!r}: must be a writable path ({exc.strerror})") from None
        print(f"wrote {args.csv}")
    return 0
