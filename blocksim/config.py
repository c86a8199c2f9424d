"""Run configuration: one frozen dataclass per TOML section, validation, dotted overrides.

A run config is a TOML file with the sections ``[model]``, ``[lattice]``, ``[rg]``, ``[solver]``,
``[observables]`` and ``[run]`` (all optional; every field has a default). The schema, with the
units of every field, is documented field by field below and in ``docs/config.md``.

* Unknown sections or keys are errors that name the nearest valid key (:func:`blocksim.errors.suggest`).
* Type and range errors are one line: ``section.field = value: must be …``.
* Overrides are dotted ``section.field=value`` strings whose value uses TOML value syntax
  (``rg.steps=8``, ``observables.temperatures=[0.05, 0.1]``, ``solver.method="exact"``); a value
  that is not valid TOML is taken as a bare string (``solver.method=exact``). Nothing is ``eval``-ed.
* :meth:`Config.to_toml` writes the resolved config; ``load_config(cfg.to_toml()) == cfg``.

Units (BRIEF §2): energies, frequencies and temperatures in units of E* (the bare block level
scale, ħ = k_B = 1), lengths in units of L_1, the coupling g = T*²/(ρ c_t² L_1³ E*) dimensionless.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import (
    BLOCK_KINDS,
    FORMS,
    LEVEL_DISTRIBUTIONS,
    LINES,
    MAX_EXACT_DIM,
    POOL_STRATEGIES,
    PROGRESS,
    SHAPES,
    MAX_SECTOR_DIM,
    OMEGA_LIMITS,
    OMEGA_MAX_DECADES,
    SOLVERS,
    SQRT_FOUR_THIRDS,
    TRUNCATIONS,
    exact_state_count,
    perturbative_state_count,
    sector_dimension,
)
from .errors import InputError, suggest
from .model.tensors import parse_direction

__all__ = [
    "ModelConfig",
    "LatticeConfig",
    "RGConfig",
    "SolverConfig",
    "ObservablesConfig",
    "RunConfig",
    "Config",
    "SECTIONS",
    "load_config",
    "parse_overrides",
    "parse_direction",
    "schema_markdown",
]

#: Steps when neither rg.steps nor rg.r_over_l1 is given.
DEFAULT_STEPS = 3


# --------------------------------------------------------------------------------------------
# Field descriptors
# --------------------------------------------------------------------------------------------
def _f(default, doc: str, units: str = "1", *, kind: str, check=None, choices=None):
    """A config field: ``kind`` ∈ int, float, str, bool, floats, strs, ints, float|auto, int|none, float|none."""
    meta = {"doc": doc, "units": units, "kind": kind, "check": check, "choices": choices}
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata=meta)


def _gt(lo):
    return lambda x: None if x > lo else f"must be > {lo:g}"


def _ge(lo):
    return lambda x: None if x >= lo else f"must be ≥ {lo:g}"


def _range(lo, hi):
    return lambda x: None if lo <= x <= hi else f"must be between {lo:g} and {hi:g}"


def _open01(x):
    return None if 0 < x < 1 else "must be between 0 and 1 (exclusive)"


def _mb_check(x):
    return None if x >= SQRT_FOUR_THIRDS else "must be ≥ sqrt(4/3) ≈ 1.1547 (isotropic stress bound)"


def _cl_check(x):
    return None if x > SQRT_FOUR_THIRDS else "must be > sqrt(4/3) ≈ 1.1547 (positive bulk modulus)"


def _band_check(x):
    if len(x) != 2 or not 0.0 <= x[0] < x[1] <= 1.0:
        return "must be [lo, hi] with 0 ≤ lo < hi ≤ 1 (fractions of the log ω grid)"
    return None


def _temps_check(x):
    if len(x) == 0:
        return "must be a non-empty list of temperatures > 0"
    if any(t <= 0 for t in x):
        return "must be a list of temperatures > 0"
    if any(b <= a for a, b in zip(x, x[1:])):
        return "must be strictly increasing"
    return None


def _dirs_check(x):
    for d in x:
        try:
            parse_direction(d)
        except ValueError as exc:
            return f"entry {d!r} {exc}"
    if len(set(x)) != len(x):
        return "must not repeat a direction"
    return None


def _seed_check(x):
    return None if 0 <= x < 2**64 else "must be an integer with 0 ≤ seed < 2^64"


def _spawn_check(x):
    return None if all(0 <= v < 2**64 for v in x) else "must be a list of integers with 0 ≤ entry < 2^64"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the bare block ensemble and the block–block coupling (BRIEF §1.1–1.2)."""

    block: str = _f("generic", "block ensemble: 'generic' (n levels), 'ttls' (k independent TTLS, n = 2^k) "
                    "or 'goe' (random-matrix)", kind="str", choices=tuple(BLOCK_KINDS))
    n: int = _f(3, "levels per bare block (block = 'generic' or 'goe')", kind="int", check=_range(2, 64))
    k: int = _f(1, "TTLS per bare block, n = 2^k (block = 'ttls')", kind="int", check=_range(1, 6))
    level_distribution: str = _f("uniform", "excited-level law of generic blocks: 'uniform', 'exponential', "
                                 "'poisson' or 'wigner'", kind="str", choices=LEVEL_DISTRIBUTIONS)
    level_scale: float = _f(1.0, "level scale of generic/GOE blocks (mean spacing or width)", "E*",
                            kind="float", check=_gt(0))
    delta_max: float = _f(1.0, "TTLS asymmetry Δ uniform on [−delta_max, delta_max]", "E*",
                          kind="float", check=_ge(0))
    delta0_min: float = _f(1e-3, "smallest TTLS tunnelling splitting Δ0 (P(Δ0) ∝ 1/Δ0)", "E*",
                           kind="float", check=_gt(0))
    delta0_max: float = _f(1.0, "largest TTLS tunnelling splitting Δ0", "E*", kind="float", check=_gt(0))
    gamma: float = _f(1.0, "TTLS deformation potential γ", "T*", kind="float", check=_gt(0))
    mb_bare: float = _f(1.6, "bare ratio γ_l/γ_t of the isotropic stress ensemble (≥ sqrt(4/3))",
                        kind="float", check=_mb_check)
    cl_over_ct: float = _f(1.6, "sound-velocity ratio c_l/c_t (> sqrt(4/3))", kind="float", check=_cl_check)
    coupling: float = _f(0.05, "dimensionless coupling g = T*²/(ρ c_t² L_1³ E*) at the first step", "1",
                         kind="float", check=_ge(0))
    form: str = _f("zhou-leggett", "coupling law: 'zhou-leggett' (Eq. A15) or 'joffrin-levelut' (Eq. A1)",
                   kind="str", choices=FORMS)

    @property
    def levels(self) -> int:
        """Levels per bare block (2^k for TTLS blocks)."""
        return 2**self.k if self.block == "ttls" else self.n

    def block_spec(self) -> dict:
        """The ``spec`` dict of :func:`blocksim.model.blocks.make_blocks` for this ensemble."""
        spec = {"kind": self.block}
        for name in BLOCK_KINDS[self.block]:
            spec[name] = getattr(self, name)
        return spec


@dataclass(frozen=True)
class LatticeConfig:
    """``[lattice]``: how members sit inside a super block."""

    n0: int = _f(2, "blocks per edge of a super block; a super block has N0³ members", kind="int",
                 check=_range(2, 9))
    shape: str = _f("cube", "super-block shape (only 'cube': an N0×N0×N0 cubic lattice, spacing 1)",
                    kind="str", choices=SHAPES)


@dataclass(frozen=True)
class RGConfig:
    """``[rg]``: the coarse-graining loop (BRIEF §1.5, §1b "Pool collapse")."""

    steps: int | None = _f(None, "number of coarse-graining steps K (give this or r_over_l1; neither = 3)",
                           kind="int|none", check=_range(1, 64))
    r_over_l1: float | None = _f(None, "sample size R/L_1; steps = round(log_N0(R/L_1)) (Eq. 4.2)", "L_1",
                                 kind="float|none", check=_gt(1))
    pool_size: int = _f(16, "pool size P: blocks in the final pool ('partition') or in every pool "
                        "('resample')", kind="int", check=_ge(1))
    pool_strategy: str = _f("partition", "'partition' (every block used once; initial pool "
                            "P·N0^(3K)), 'resample' (fixed P, with replacement; rg.samples independent "
                            "replicate pools) or 'tree' (rg.samples independent trees of N0^(3K) bare "
                            "blocks, built depth first; needs explicit omega_min and omega_max)", kind="str",
                            choices=POOL_STRATEGIES)
    samples: int = _f(16, "independent samples: 'tree' = number of trees (final blocks); 'resample' = number "
                      "of independent replicate pools of rg.pool_size blocks (errors from their spread); "
                      "'partition' ignores it (its super blocks are independent)", kind="int",
                      check=_range(1, 1_000_000))
    min_effective_samples: int = _f(16, "a step whose effective number of independent samples is below this "
                                    "is marked unreliable: its errors are NaN and the run warns", kind="int",
                                    check=_ge(2))
    n_keep: int = _f(3, "levels kept per truncated super block (ground state included)", kind="int",
                     check=_ge(2))
    truncation: str = _f("lowest", "truncation rule: 'lowest' n_keep levels (Wilson style) or 'window' "
                         "(the ground state and the n_keep−1 levels nearest window_center)", kind="str",
                         choices=TRUNCATIONS)
    window_center: float = _f(0.5, "centre of the 'window' truncation: a fixed probe frequency", "E*",
                              kind="float", check=_gt(0))
    max_initial_pool: int = _f(2_000_000, "largest initial pool accepted (memory guard)", kind="int",
                               check=_ge(1))
    diversity_warn: float = _f(0.5, "warn when the pool's distinct lowest-gap lineages fall below this "
                               "fraction of P", kind="float", check=_range(0, 1))

    def n_steps(self, n0: int) -> int:
        """Number of steps K: ``steps``, else ``round(log_N0(r_over_l1))`` (at least 1), else 3."""
        if self.steps is not None:
            return self.steps
        if self.r_over_l1 is None:
            return DEFAULT_STEPS
        return max(1, int(round(math.log(self.r_over_l1) / math.log(n0))))


@dataclass(frozen=True)
class SolverConfig:
    """``[solver]``: how each super block is diagonalized (BRIEF §1.3)."""

    method: str = _f("perturbative", "'perturbative' (Eq. 3.2), 'sector' (ED in the low-energy sector) or "
                     "'exact' (full ED, tiny super blocks)", kind="str", choices=SOLVERS)
    resonance_threshold: float = _f(0.1, "|V_ab| / |E_a − E_b| above which a pair counts as resonant "
                                    "(0 < x < 1)", kind="float", check=_open01)
    include_doubles: bool = _f(False, "include double excitations as states (not only as admixture)",
                               kind="bool")
    batched: bool = _f(True, "solve all super blocks of a step in one numba call where possible "
                       "('perturbative', N0 ≤ 4; results bit-identical); false forces the per-super-block "
                       "path", kind="bool")


@dataclass(frozen=True)
class ObservablesConfig:
    """``[observables]``: temperatures, the ω grid, line shape, directions and the MB reference."""

    temperatures: tuple = _f([0.02, 0.05, 0.1], "temperatures, strictly increasing", "E*", kind="floats",
                             check=_temps_check)
    reference_temperature: float | None = _f(None, "temperature of the MB reference (one of "
                                             "temperatures; default the lowest)", "E*", kind="float|none",
                                             check=_gt(0))
    omega_points: int = _f(48, "points of the log-spaced ω grid", kind="int", check=_range(4, 100_000))
    omega_min: Any = _f("auto", "lowest ω of the grid, or 'auto' (follows each step's spectrum); "
                        f"between {OMEGA_LIMITS[0]:g} and {OMEGA_LIMITS[1]:g}", "E*",
                        kind="float|auto", check=_range(*OMEGA_LIMITS))
    omega_max: Any = _f("auto", f"highest ω of the grid, or 'auto'; at most {OMEGA_MAX_DECADES} decades above "
                        "omega_min", "E*", kind="float|auto", check=_range(*OMEGA_LIMITS))
    line: str = _f("bins", "line shape replacing δ(ω): 'bins' (spectral weight per log-spaced bin, "
                   "omega = geometric bin centres), 'lorentzian' or 'gaussian'", kind="str", choices=LINES)
    width: float = _f(0.5, "line width in units of the step's lowest grid frequency ω_min: HWHM "
                      "(Lorentzian) or σ (Gaussian) = width·ω_min; ignored for 'bins'", kind="float",
                      check=_range(1e-6, 1e6))
    reference_band: tuple = _f([0.0, 1.0], "ω band [lo, hi] of the MB reference, as fractions of the "
                               "log grid span", kind="floats", check=_band_check)
    directions: tuple = _f(["100", "110:001", "110:1-10", "111"], "propagation directions 'q' or 'q:p' "
                           "(Miller indices, p = transverse polarization) reported beside the powder "
                           "average", kind="strs", check=_dirs_check)


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: randomness, output and threads."""

    seed: int | None = _f(None, "entropy of numpy.random.SeedSequence; omitted = fresh entropy, recorded "
                          "in the output", kind="int|none", check=_seed_check)
    spawn_key: tuple = _f([], "base spawn key prepended to every stream key (sweeps set it)",
                          kind="ints", check=_spawn_check)
    output: str = _f("", "output .h5 path; '' = out/<config stem>.h5", kind="str")
    numba_threads: int = _f(0, "numba threads (0 = numba's default / NUMBA_NUM_THREADS); results do not "
                            "depend on it", kind="int", check=_ge(0))
    progress: str = _f("auto", "'auto' (bar on a terminal, else one log line per step), 'bar', 'log' "
                       "or 'none'", kind="str", choices=PROGRESS)


#: TOML section name → dataclass.
SECTIONS = {
    "model": ModelConfig,
    "lattice": LatticeConfig,
    "rg": RGConfig,
    "solver": SolverConfig,
    "observables": ObservablesConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class Config:
    """A complete, validated run configuration (one field per TOML section)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    rg: RGConfig = field(default_factory=RGConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    observables: ObservablesConfig = field(default_factory=ObservablesConfig)
    run: RunConfig = field(default_factory=RunConfig)
    #: where the config came from (file stem, for the default output name); not part of the TOML
    name: str = field(default="blocksim", compare=False)

    # derived quantities -------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        """Number of coarse-graining steps K."""
        return self.rg.n_steps(self.lattice.n0)

    @property
    def members(self) -> int:
        """Members per super block, N0³."""
        return self.lattice.n0**3

    def pool_sizes(self) -> list[int]:
        """Pool size at steps 0..K (K+1 entries; the last is the final pool of truncated super blocks)."""
        k, p, m = self.n_steps, self.rg.pool_size, self.members
        if self.rg.pool_strategy == "partition":
            return [p * m ** (k - i) for i in range(k + 1)]
        if self.rg.pool_strategy == "tree":
            return [self.rg.samples * m ** (k - i) for i in range(k + 1)]
        return [p * self.rg.samples] * (k + 1)

    @property
    def reference_temperature(self) -> float:
        """Temperature of the MB reference (the lowest temperature unless set)."""
        t = self.observables.reference_temperature
        return self.observables.temperatures[0] if t is None else t

    def output_path(self) -> Path:
        """Output path: ``run.output`` or ``out/<name>.h5``."""
        return Path(self.run.output) if self.run.output else Path("out") / f"{self.name}.h5"

    def to_dict(self) -> dict:
        """Nested dict ``{section: {field: value}}``; unset optional fields (None) are left out."""
        out = {}
        for sec in SECTIONS:
            obj = getattr(self, sec)
            out[sec] = {
                f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(obj)
                if (v := getattr(obj, f.name)) is not None
            }
        return out

    def to_toml(self) -> str:
        """The resolved config as TOML text; ``load_config(self.to_toml()) == self``."""
        lines = []
        for sec, values in self.to_dict().items():
            lines.append(f"[{sec}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)

    def replace(self, **dotted) -> "Config":
        """A copy with dotted overrides applied, e.g. ``cfg.replace(**{"rg.steps": 4})``."""
        return load_config(self, dotted)


# --------------------------------------------------------------------------------------------
# TOML writing
# --------------------------------------------------------------------------------------------
def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):  # pragma: no cover - rejected by validation
            raise InputError(f"value = {value!r}: must be finite")
        return repr(value)
    if isinstance(value, str):
        out = ['"']
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ch == "\x7f":
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InputError(f"value = {value!r}: cannot be written as TOML")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _typename(kind: str) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "bool": "true or false",
        "floats": "a list of numbers",
        "strs": "a list of strings",
        "ints": "a list of integers",
        "float|auto": "a number or \"auto\"",
        "int|none": "an integer",
        "float|none": "a number",
    }[kind]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _coerce(where: str, kind: str, value):
    """Check the type of ``value`` for ``kind``; return the stored value or raise InputError."""
    bad = InputError(f"{where} = {_show(value)}: must be {_typename(kind)}")
    if kind in ("int", "int|none"):
        if _is_int(value):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if kind in ("float", "float|none"):
        if _is_num(value):
            return float(value)
        raise bad
    if kind == "float|auto":
        if value == "auto":
            return value
        if _is_num(value):
            return float(value)
        raise bad
    if kind == "str":
        if isinstance(value, str):
            return value
        raise bad
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if kind in ("floats", "strs", "ints"):
        if not isinstance(value, (list, tuple)):
            raise bad
        test = {"floats": _is_num, "strs": lambda v: isinstance(v, str), "ints": _is_int}[kind]
        if not all(test(v) for v in value):
            raise bad
        return tuple(float(v) for v in value) if kind == "floats" else tuple(value)
    raise AssertionError(kind)  # pragma: no cover


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{...}"
    return repr(value)


def _build_section(sec: str, values: dict):
    cls = SECTIONS[sec]
    if not isinstance(values, dict):
        raise InputError(f"{sec} = {_show(values)}: must be a TOML table [{sec}]")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise InputError(f"{sec}.{key}: unknown key in [{sec}]" + suggest(key, fields))
        meta = fields[key].metadata
        where = f"{sec}.{key}"
        v = _coerce(where, meta["kind"], value)
        if meta["choices"] is not None and v not in meta["choices"]:
            raise InputError(
                f"{where} = {_show(v)}: must be one of {', '.join(map(repr, meta['choices']))}"
                + suggest(str(v), meta["choices"])
            )
        if meta["check"] is not None and not (isinstance(v, str) and meta["kind"] == "float|auto"):
            msg = meta["check"](v)
            if msg:
                raise InputError(f"{where} = {_show(v)}: {msg}")
        kwargs[key] = v
    return cls(**kwargs)


def _check_solver_sizes(cfg: Config) -> None:
    """Every step's super block must fit its solver and hold ≥ rg.n_keep states (checked before step 0).

    Step 0 has members with model.levels levels; every later step has members with rg.n_keep levels.
    """
    method, rg = cfg.solver.method, cfg.rg
    members = cfg.members
    if cfg.solver.include_doubles and method != "sector":
        raise InputError(
            f"solver.include_doubles = true: only solver.method = 'sector' computes double excitations as "
            f"states (method = {method!r}); set it to false, or use 'sector'"
        )
    for k in range(cfg.n_steps):
        n = cfg.model.levels if k == 0 else rg.n_keep
        where = f"step {k} (N0³ = {members} members with {n} levels)"
        if method == "exact":
            if n > 1 and math.log(n) * members > math.log(MAX_EXACT_DIM) + 1e-12:
                dim = n**members if members * math.log10(n) < 30 else f"10^{members * math.log10(n):.0f}"
                raise InputError(
                    f"solver.method = 'exact': {where} has a Hilbert space of n^(N0³) = {dim} states; must be ≤ "
                    f"{MAX_EXACT_DIM}; use 'sector' or 'perturbative', or a smaller rg.n_keep"
                )
            states = exact_state_count(members, n)
        elif method == "sector":
            kmax = 2 if cfg.solver.include_doubles else 1
            states = sector_dimension(members, n, kmax)
            if states > MAX_SECTOR_DIM:
                raise InputError(
                    f"solver.method = 'sector': {where} has a sector of {states} states (≤ {kmax} excitations); "
                    f"must be ≤ {MAX_SECTOR_DIM}; use 'perturbative' or a smaller rg.n_keep"
                )
        else:
            states = perturbative_state_count(members, n)
        if rg.n_keep > states:
            extra = "" if method != "perturbative" else " (ground + single excitations)"
            raise InputError(
                f"rg.n_keep = {rg.n_keep}: must be ≤ {states}, the states solver.method = {method!r} computes at "
                f"{where}{extra}"
            )


def _cross_check(cfg: Config) -> None:
    """Checks that involve several fields (one line each, naming the field at fault)."""
    m, rg, obs = cfg.model, cfg.rg, cfg.observables
    if rg.steps is not None and rg.r_over_l1 is not None:
        raise InputError(f"rg.r_over_l1 = {rg.r_over_l1!r}: must not be given together with rg.steps")
    if m.block == "ttls" and not m.delta0_max > m.delta0_min:
        raise InputError(f"model.delta0_max = {m.delta0_max!r}: must be > model.delta0_min = {m.delta0_min!r}")
    members = cfg.members
    k = cfg.n_steps
    if k > 64:
        raise InputError(f"rg.r_over_l1 = {rg.r_over_l1!r}: gives {k} steps; must give ≤ 64")
    _check_solver_sizes(cfg)
    if rg.pool_strategy == "partition":
        p0 = rg.pool_size * members**k
        if p0 > rg.max_initial_pool:
            raise InputError(
                f"rg.pool_size = {rg.pool_size}: the 'partition' initial pool P·N0^(3K) = "
                f"{rg.pool_size}·{members}^{k} = {p0} must be ≤ rg.max_initial_pool = {rg.max_initial_pool}"
            )
    elif rg.pool_strategy == "tree":
        for name in ("omega_min", "omega_max"):
            if getattr(obs, name) == "auto":
                raise InputError(
                    f"observables.{name} = 'auto': must be a number for rg.pool_strategy = 'tree' (the grid is "
                    f"fixed before the trees are built), e.g. observables.omega_min = 1e-3, omega_max = 10")
    elif rg.pool_size < members:
        raise InputError(f"rg.pool_size = {rg.pool_size}: must be ≥ N0³ = {members} for 'resample'")
    if obs.reference_temperature is not None and obs.reference_temperature not in obs.temperatures:
        raise InputError(
            f"observables.reference_temperature = {obs.reference_temperature!r}: must be one of "
            f"observables.temperatures {list(obs.temperatures)}"
        )
    if isinstance(obs.omega_min, float) and isinstance(obs.omega_max, float):
        if not obs.omega_max > obs.omega_min:
            raise InputError(
                f"observables.omega_max = {obs.omega_max!r}: must be > observables.omega_min = {obs.omega_min!r}"
            )
        if math.log10(obs.omega_max / obs.omega_min) > OMEGA_MAX_DECADES:
            raise InputError(
                f"observables.omega_max = {obs.omega_max!r}: must be ≤ 1e{OMEGA_MAX_DECADES} × observables.omega_min "
                f"= {obs.omega_min!r} (at most {OMEGA_MAX_DECADES} decades)"
            )


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------
def _parse_value(text: str, key: str = "override"):
    """TOML value syntax (``8``, ``0.1``, ``true``, ``[1, 2]``, ``"x"``); otherwise the bare string.

    The value must be a single value: a line break or text after the value (``2\\n[evil]``) is refused,
    never silently dropped.
    """
    if any(ch in text for ch in "\n\r\x00"):
        raise InputError(f"override {key}={text!r}: must be a single value on one line")
    try:
        data = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text.strip()
    if list(data) != ["v"]:
        raise InputError(f"override {key}={text!r}: must be a single value")
    return data["v"]


def parse_overrides(overrides) -> dict:
    """``["rg.steps=8", ...]`` or ``{"rg.steps": 8}`` → ``{("rg", "steps"): 8}``.

    String values are parsed with TOML value syntax (never ``eval``); a value that is not valid
    TOML is kept as a bare string.
    """
    items = []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        for text in overrides:
            if not isinstance(text, str) or "=" not in text:
                raise InputError(f"override {text!r}: must be section.field=value (e.g. rg.steps=8)")
            key, value = text.split("=", 1)
            items.append((key.strip(), _parse_value(value, key.strip())))
    out = {}
    for key, value in items:
        parts = str(key).split(".")
        if len(parts) != 2 or not all(parts):
            raise InputError(f"override {key!r}: must be section.field (e.g. rg.steps)")
        if parts[0] not in SECTIONS:
            raise InputError(f"override {key!r}: unknown section {parts[0]!r}" + suggest(parts[0], SECTIONS))
        out[(parts[0], parts[1])] = value
    return out


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _read_source(source) -> tuple[dict, str]:
    """Return (nested dict, name) from a path, TOML text, dict or Config."""
    if isinstance(source, Config):
        return source.to_dict(), source.name
    if isinstance(source, dict):
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in source.items()}, "blocksim"
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        # a str is a path when it names an existing file, or is one line ending in .toml (a path that
        # may be missing, e.g. "g=0.1.toml"); anything else is TOML text. A PathLike is always a path.
        one_line = "\n" not in text and "\r" not in text
        looks_like_path = isinstance(source, os.PathLike) or (one_line and (
            os.path.isfile(text) or text.strip().lower().endswith(".toml") or "=" not in text))
        if looks_like_path:
            path = Path(text)
            if path.is_dir():
                raise InputError(f"config = {text!r}: is a directory, not a TOML file")
            if not path.is_file():
                raise InputError(f"config = {text!r}: file not found")
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"config {text!r}: invalid TOML ({exc})") from None
            except UnicodeDecodeError:
                raise InputError(f"config {text!r}: not a UTF-8 text file") from None
            except OSError as exc:
                raise InputError(f"config = {text!r}: cannot be read ({exc.strerror or exc})") from None
            return data, path.stem
        try:
            return tomllib.loads(text), "blocksim"
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"config text: invalid TOML ({exc})") from None
    raise InputError(f"config = {source!r}: must be a path, TOML text, a dict or a Config")


def load_config(source, overrides=()) -> Config:
    """Load, override and validate a run config.

    ``source`` is a path to a TOML file, TOML text, a nested dict or a :class:`Config`;
    ``overrides`` is a list of ``"section.field=value"`` strings or a dict ``{"section.field": value}``.
    Raises :class:`InputError` with a one-line message on any unknown key, wrong type or bad range.
    """
    data, name = _read_source(source)
    for sec in data:
        if sec not in SECTIONS:
            raise InputError(f"{sec}: unknown section" + suggest(sec, SECTIONS) +
                             f"; valid sections: {', '.join(SECTIONS)}")
    for (sec, key), value in parse_overrides(overrides).items():
        table = data.setdefault(sec, {})
        if not isinstance(table, dict):
            raise InputError(f"{sec} = {_show(table)}: must be a TOML table [{sec}]")
        table[key] = value
    sections = {sec: _build_section(sec, data.get(sec, {})) for sec in SECTIONS}
    cfg = Config(**sections, name=name)
    _cross_check(cfg)
    return cfg


def schema_markdown() -> str:
    """The schema as Markdown tables (used to write and test ``docs/config.md``)."""
    lines = []
    for sec, cls in SECTIONS.items():
        lines += [f"### [{sec}]", "", (cls.__doc__ or "").strip(), "",
                  "| key | type | default | units | meaning |", "|---|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            meta = f.metadata
            default = f.default
            shown = "(unset)" if default is None else _toml_value(list(default) if isinstance(default, tuple) else default)
            choices = meta["choices"]
            doc = meta["doc"].replace("|", "\\|")
            kind = meta["kind"] + (f" ∈ {{{', '.join(choices)}}}" if choices else "")
            lines.append(f"| `{f.name}` | {kind.replace('|', ' or ')} | `{shown}` | {meta['units']} | {doc} |")
        lines.append("")
    return "\n".join(lines)
