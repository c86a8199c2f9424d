"""Real-space coarse-graining (RG) of a pool of blocks (BRIEF §1.5, §1b; Eq. 3.8, 4.1, 4.2 of [ZL]).

Step k (k = 0 … K−1) holds a pool of blocks of linear size L_k = N0^k (units of L_1). It builds
P_out super blocks; super block j takes N0³ members from the pool (``members[j]``), rotates member i
by ``rotations[j, i]`` (T → R T Rᵀ), places it on lattice site i of an N0³ cube (spacing 1) and
couples the members with g_k = g / N0^(3k) (DESIGN note 3). Each super block is solved
(:func:`blocksim.spectra.solve`), its response is accumulated, and it is truncated to its lowest
``n_keep`` levels with the matrix elements of the total stress in that basis
(:meth:`Spectrum.truncate`). The P_out truncated super blocks, in order, are the pool of step k+1
(scale L_{k+1} = N0·L_k). K is ``rg.steps`` or round(log_N0(R/L_1)) (Eq. 4.2).

Pool strategies (BRIEF §1b "Pool collapse")

* ``"partition"``: the pool of step k has P·N0^(3(K−k)) blocks and is split by a random permutation
  into P·N0^(3(K−k−1)) disjoint super blocks: every block is used exactly once.
* ``"resample"``: the pool has P blocks at every step; each super block draws its N0³ members
  uniformly with replacement. The pool's diversity is recorded: the number of distinct initial
  ancestors and the number of distinct lowest-gap lineages (the initial block whose lowest
  excitation is the block's lowest excitation, followed through the dominant member of each
  super block's first excited state); a warning is logged when the lineages fall below
  ``rg.diversity_warn``·P.

Observables per step (the super blocks built in the step, V = one super block)

* Im χ and Re χ on a log ω grid (:func:`frequency_grid`; ``"auto"`` follows each step's spectrum),
  powder-averaged (the isotropic projection of the Mandel tensor, which equals the exact
  orientation average) and along the configured directions.
* MB reference: ``W_ab = ∫_band Im χ_ab(T_ref, ω) dω`` with sharp lines, i.e.
  ``W_ab = −π Σ_k p_k(T_ref)(1 − e^{−ω_k/T_ref}) amp_ka amp_kb`` over the transitions with ω_k in the
  band, per super block. ``mb_ratio = sqrt(Σ_j W_l^j / Σ_j W_t^j)`` and its standard error is the
  delete-one jackknife over the super blocks j (:func:`jackknife_ratio`). The same reference for
  the uncoupled pool blocks entering the step is ``mb_ratio_pool``.

Randomness: every stream is ``SeedSequence(seed, spawn_key=run.spawn_key + (stream, ...))`` with
stream 0 = initial pool, (1, k) = members of step k, (2, k, j) = rotations of super block j of step
k. Nothing depends on call order or thread count, so ``--resume`` reproduces an uninterrupted run
bit for bit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import __version__
from . import io as bio
from .config import Config, load_config
from .errors import InputError, NonFiniteError
from .outputlock import OutputLock
from .observables import (  # noqa: F401  (re-exported: part of rg's documented API)
    band_weight_tensors,
    direction_vectors,
    frequency_grid,
    jackknife_ratio,
    mb_from_weights,
    pool_transitions,
    powder_lt,
    reference_weights,
    response_arrays,
)
from .tensors import isotropic_projection, random_rotation

__all__ = [
    "STREAM_INITIAL_POOL",
    "STREAM_MEMBERS",
    "STREAM_ROTATIONS",
    "RunInterrupted",
    "run",
    "stream_rng",
    "initial_pool",
    "step_members",
    "step_rotations",
    "coupling_at_step",
    "frequency_grid",
    "powder_lt",
    "direction_vectors",
    "band_weight_tensors",
    "jackknife_ratio",
    "pool_transitions",
]

log = logging.getLogger("blocksim.rg")

STREAM_INITIAL_POOL = 0
STREAM_MEMBERS = 1
STREAM_ROTATIONS = 2
class RunInterrupted(Exception):
    """The run was stopped by a signal (SIGTERM/SIGINT); the partial file is marked "failed"."""

    def __init__(self, signum: int, path: Path | None = None):
        self.signum = int(signum)
        self.path = path
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


# --------------------------------------------------------------------------------------------
# Random streams and the pool
# --------------------------------------------------------------------------------------------
def stream_rng(cfg: Config, *key: int) -> np.random.Generator:
    """Generator of ``SeedSequence(run.seed, spawn_key=run.spawn_key + key)`` (seed must be resolved)."""
    if cfg.run.seed is None:
        raise InputError("run.seed: must be resolved before drawing random numbers")
    ss = np.random.SeedSequence(cfg.run.seed, spawn_key=tuple(cfg.run.spawn_key) + tuple(int(k) for k in key))
    return np.random.default_rng(ss)


def initial_pool(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The pool of step 0: ``(energies [P0, n], stress [P0, 6, n, n])`` from :func:`blocks.make_blocks`."""
    from .blocks import make_blocks

    return make_blocks(stream_rng(cfg, STREAM_INITIAL_POOL), cfg.pool_sizes()[0], cfg.model.block_spec())


def step_members(cfg: Config, k: int, pool_size: int) -> np.ndarray:
    """Member indices ``[P_out, N0³]`` of the super blocks of step k (pool strategy of the config)."""
    rng = stream_rng(cfg, STREAM_MEMBERS, k)
    m = cfg.members
    if cfg.rg.pool_strategy == "partition":
        if pool_size % m:
            raise InputError(f"pool size = {pool_size}: must be a multiple of N0³ = {m} for 'partition'")
        return rng.permutation(pool_size).reshape(pool_size // m, m).astype(np.int64)
    return rng.integers(0, pool_size, size=(cfg.rg.pool_size, m), dtype=np.int64)


def step_rotations(cfg: Config, k: int, j: int) -> np.ndarray:
    """Haar rotations ``[N0³, 3, 3]`` of the members of super block j of step k."""
    return random_rotation(stream_rng(cfg, STREAM_ROTATIONS, k, j), cfg.members)


def coupling_at_step(cfg: Config, k: int) -> float:
    """g_k = g / N0^(3k) (lattice spacing 1 at every scale; DESIGN note 3)."""
    return cfg.model.coupling / float(cfg.members) ** k


# --------------------------------------------------------------------------------------------
# Grid, projections, band weights, error bars
# --------------------------------------------------------------------------------------------
def _ground_weight_tensor(stress) -> np.ndarray:
    """Pool-averaged ground-state spectral-weight tensor Σ_{m>0} ⟨0|T_a|m⟩⟨m|T_b|0⟩ ``[6, 6]`` (T*²)."""
    row = stress[:, :, 0, 1:]  # [P, 6, n-1]
    return np.einsum("pam,pbm->ab", row, row) / stress.shape[0]


def _distinct_ancestors(members_history: list, pool_size: int) -> int:
    """Number of initial-pool blocks that are ancestors of the current pool."""
    used = np.arange(pool_size)
    for members in reversed(members_history):
        used = np.unique(members[used].ravel())
    return int(used.size)


# --------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------
def _solve_superblocks(cfg, k, pool_e, pool_t, members, table, tick):
    """Solve every super block of step k; returns per-super-block lists and warning counts."""
    from .spectra import ResonanceWarning, assemble_superblock, solve

    g_k = coupling_at_step(cfg, k)
    temps = np.asarray(cfg.observables.temperatures, dtype=float)
    n_keep = cfg.rg.n_keep
    out = {"rotations": [], "trans": [], "energies": [], "stress": [], "trunc": [], "solver": [],
           "gaps": [], "exc": [], "lead": []}
    n_res_warn = 0
    for j in range(members.shape[0]):
        rot = step_rotations(cfg, k, j)
        idx = members[j]
        sb = assemble_superblock(pool_e[idx], pool_t[idx], rot, cfg.lattice.n0, g_k, cfg.model.cl_over_ct,
                                 cfg.model.form, table=table)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = solve(sb, cfg.solver.method, resonance_threshold=cfg.solver.resonance_threshold,
                         include_doubles=cfg.solver.include_doubles)
        for w in caught:
            if issubclass(w.category, ResonanceWarning):
                n_res_warn += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if len(spec.energies) < n_keep + 0:
            raise InputError(
                f"rg.n_keep = {n_keep}: super block {j} of step {k} has only {len(spec.energies)} computed states"
            )
        window = cfg.rg.window_center if cfg.rg.truncation == "window" else None
        e_new, t_new, diag = spec.truncate(n_keep, window)
        if not (np.all(np.isfinite(e_new)) and np.all(np.isfinite(t_new))):
            raise RuntimeError(
                f"solver {cfg.solver.method!r} returned non-finite levels or stress for super block {j} of "
                f"step {k} (members {idx.tolist()}); the run stops rather than propagate NaN"
            )
        reordered = bool(np.any(np.diff(e_new) < 0) or e_new[0] != 0.0)
        if reordered:
            # a first-order excitation fell below the dressed ground state: the lowest kept level
            # becomes the new block's ground state (counted in diagnostics/ground_reordered)
            order = np.argsort(e_new, kind="stable")
            e_new = e_new[order] - e_new[order[0]]
            t_new = t_new[:, order][:, :, order]
        diag = dict(diag, ground_reordered=reordered)
        out["rotations"].append(rot)
        out["trans"].append(spec.transitions(temps))
        out["energies"].append(e_new)
        out["stress"].append(t_new)
        out["trunc"].append(diag)
        out["solver"].append(dict(spec.diagnostics))
        out["gaps"].append(spec.energies[1])
        out["exc"].append(spec.energies[1:])
        out["lead"].append(_lead_member(spec, pool_e[idx]))
        tick()
    out["n_resonance_warnings"] = n_res_warn
    return out


def _lead_member(spec, member_energies) -> int:
    """Member whose excitation dominates the super block's first excited state."""
    labels = getattr(spec, "labels", None)
    if labels is not None and len(labels) > 1:
        excited = np.nonzero(np.asarray(labels[1]))[0]
        if excited.size:
            return int(excited[0])
    return int(np.argmin(member_energies[:, 1]))


def compute_step(cfg: Config, k: int, pool_e, pool_t, lineage, members_history, tick=lambda: None):
    """Run step k on the pool; returns ``(values, diagnostics, new_pool_e, new_pool_t, new_lineage)``.

    ``values`` holds every field of :data:`blocksim.io.STEP_DATASETS`; ``diagnostics`` maps names to
    ``(array, units, description)``. ``lineage`` [P_k] gives the initial block carrying each pool
    block's lowest excitation; ``members_history`` the member arrays of the earlier steps.
    """
    from .coupling import displacement_table

    obs = cfg.observables
    p_k = pool_e.shape[0]
    members = step_members(cfg, k, p_k)
    table = displacement_table(cfg.lattice.n0, cfg.model.cl_over_ct, cfg.model.form)
    sol = _solve_superblocks(cfg, k, pool_e, pool_t, members, table, tick)
    p_out = members.shape[0]

    edges, centres = frequency_grid(cfg, sol["gaps"], np.concatenate(sol["exc"]))
    span = np.log(edges[-1] / edges[0])
    band = tuple(float(edges[0] * np.exp(f * span)) for f in obs.reference_band)
    resp = response_arrays(cfg, sol["trans"], edges, centres)
    e_l, e_t = direction_vectors(obs.directions)

    w = reference_weights(cfg, sol["trans"], band)
    wl, wt, mb, mb_err, mb_dir, mb_dir_err = mb_from_weights(w, e_l, e_t)
    om, amp, pop, seg = pool_transitions(pool_e, pool_t, cfg.reference_temperature)
    w_pool = band_weight_tensors(om, amp, pop, cfg.reference_temperature, seg, p_k, band)
    mb_pool, mb_pool_err = jackknife_ratio(*powder_lt(w_pool))

    new_e = np.array(sol["energies"])
    new_t = np.array(sol["stress"])
    lead = np.array(sol["lead"], dtype=np.int64)
    new_lineage = lineage[members[np.arange(p_out), lead]]

    values = {
        "scale_L": float(cfg.lattice.n0**k),
        "scale_L_out": float(cfg.lattice.n0 ** (k + 1)),
        "coupling_g": coupling_at_step(cfg, k),
        "omega": centres,
        "omega_edges": edges,
        "temperature": np.asarray(obs.temperatures, dtype=float),
        **resp,
        "mb_ratio": mb,
        "mb_ratio_err": mb_err,
        "mb_ratio_pool": mb_pool,
        "mb_ratio_pool_err": mb_pool_err,
        "directions": list(obs.directions),
        "mb_ratio_dir": mb_dir,
        "mb_ratio_dir_err": mb_dir_err,
        "reference_temperature": float(cfg.reference_temperature),
        "reference_band": np.array(band),
        "weight_tensor": w,
        "weight_l": wl,
        "weight_t": wt,
        "pool_energies": pool_e,
        "pool_stress": pool_t,
        "members": members,
        "rotations": np.array(sol["rotations"]),
        "superblock_energies": new_e,
        "superblock_stress": new_t,
    }
    _check_finite(cfg, k, values)
    diagnostics = _diagnostics(cfg, k, sol, pool_e, pool_t, lineage, new_lineage, members_history)
    return values, diagnostics, new_e, new_t, new_lineage


def _check_finite(cfg, k, values) -> None:
    """Stop the run on any NaN/±inf observable (standard errors ``*_err`` may be NaN: "not available")."""
    for name, value in values.items():
        if name.endswith("_err") or isinstance(value, (str, list)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            obs = cfg.observables
            raise NonFiniteError(
                f"step {k}: {name} has {bad} non-finite value(s) (observables.line = {obs.line!r}, "
                f"omega_min = {obs.omega_min!r}, omega_max = {obs.omega_max!r}); the run stops before writing it"
            )


def _diagnostics(cfg, k, sol, pool_e, pool_t, lineage, new_lineage, members_history):
    trunc = sol["trunc"]
    d = {}

    def add(name, value, units, description):
        d[name] = (value, units, description)

    kept = np.array([t["weight_kept"] for t in trunc])
    add("weight_kept", kept, "1", "per super block: ground-state spectral weight Σ_{0<α<n_keep}|⟨α|T|0⟩|² "
        "kept by the truncation over the sum rule Σ_{α>0}|⟨α|T|0⟩|² of the computed states")
    add("weight_kept_mean", float(kept.mean()), "1", "mean of weight_kept over the super blocks")
    add("weight_kept_min", float(kept.min()), "1", "minimum of weight_kept over the super blocks")
    add("lowest_excluded_energy", np.array([t["lowest_excluded_energy"] for t in trunc]), "E*",
        "per super block: energy of the lowest state not kept (nan if all computed states are kept)")
    dw = np.array([bool(t["double_in_window"]) for t in trunc])
    add("double_in_window", dw, "1", "per super block: 1 if the lowest double excitation lies below the "
        "highest kept level (the kept window is then incomplete unless doubles are included)")
    add("double_in_window_count", int(dw.sum()), "1", "number of super blocks with double_in_window")
    ro = np.array([bool(t["ground_reordered"]) for t in trunc])
    add("ground_reordered", ro, "1", "per super block: 1 if a computed excitation energy was < 0 (the solver's "
        "ground state was not the lowest state); the truncated levels were re-sorted and shifted so that the "
        "lowest kept level is the new ground state")
    add("ground_reordered_count", int(ro.sum()), "1", "number of super blocks with ground_reordered")
    if ro.any():
        log.warning("step %d: %d of %d super blocks had an excitation below the solver's ground state "
                    "(re-sorted; see diagnostics/ground_reordered)", k, int(ro.sum()), ro.size)
    keys = sorted({key for s in sol["solver"] for key, v in s.items() if isinstance(v, (int, float, np.number))})
    for key in keys:
        arr = np.array([float(s.get(key, np.nan)) for s in sol["solver"]])
        add(key, arr, "E*" if key == "ground_shift" else "1",
            f"per super block: solver diagnostic '{key}' (blocksim.spectra.solve)")
    if "n_resonant_pairs" in keys:
        add("n_resonant_pairs_total", int(np.nansum(d["n_resonant_pairs"][0])), "1",
            "resonant single–single pairs summed over the super blocks of the step")
    if "n_resonant_single_double" in keys:
        add("n_resonant_single_double_total", int(np.nansum(d["n_resonant_single_double"][0])), "1",
            "resonant single–double pairs |t,p⟩ ↔ |t,q; s,m⟩ summed over the super blocks of the step")
    add("n_resonance_warnings", int(sol["n_resonance_warnings"]), "1",
        "super blocks for which the solver raised a ResonanceWarning (most excitations resonant)")
    wg = _ground_weight_tensor(pool_t)
    chi_l, chi_t, resid = isotropic_projection(wg)
    add("pool_ground_weight_tensor", wg, "T*^2", "pool-averaged ground-state spectral-weight tensor "
        "Σ_{m>0}⟨0|T_a|m⟩⟨m|T_b|0⟩ [6, 6] (Mandel)")
    add("isotropy_residual", resid, "1", "‖S − S_iso‖/‖S‖ of pool_ground_weight_tensor "
        "(tensors.isotropic_projection); 0 = isotropic")
    gaps = pool_e[:, 1]
    add("level_scale", float(np.median(gaps)), "E*", "median lowest gap E_1 of the pool blocks")
    add("pool_gap_mean", float(np.mean(gaps)), "E*", "mean lowest gap E_1 of the pool blocks")
    add("pool_top_level_mean", float(np.mean(pool_e[:, -1])), "E*", "mean highest level of the pool blocks")
    p_k = pool_e.shape[0]
    ancestors = _distinct_ancestors(members_history, p_k)
    lineages = int(np.unique(lineage).size)
    collapsed = lineages < cfg.rg.diversity_warn * p_k
    add("pool_size", p_k, "1", "number of blocks in the pool entering the step")
    add("pool_distinct_ancestors", ancestors, "1", "distinct initial-pool blocks that are ancestors of the pool")
    add("pool_distinct_lineages", lineages, "1", "distinct initial blocks carrying the pool blocks' lowest "
        "excitations (lineage through the dominant member of each first excited state)")
    add("pool_collapsed", collapsed, "1", "1 if pool_distinct_lineages < rg.diversity_warn × pool_size")
    add("pool_lineage", lineage, "1", "initial-pool index carrying each pool block's lowest excitation [P_k]")
    add("lineage_out", new_lineage, "1", "the same for the truncated super blocks [P_out] (next pool)")
    if collapsed and cfg.rg.pool_strategy == "resample":
        log.warning("step %d: pool collapse: %d distinct lowest-gap lineages in a pool of %d (< %.2g·P)",
                    k, lineages, p_k, cfg.rg.diversity_warn)
    return d


# --------------------------------------------------------------------------------------------
# Summary and progress
# --------------------------------------------------------------------------------------------
_SUMMARY = (
    ("step", "1", "step index k"),
    ("scale_L", "L_1", "scale L_k of the pool entering step k"),
    ("scale_L_out", "L_1", "scale N0·L_k of the super blocks of step k (scale of mb_ratio)"),
    ("coupling_g", "1", "coupling g_k of step k"),
    ("mb_ratio", "1", "powder MB reference of the super blocks of step k"),
    ("mb_ratio_err", "1", "jackknife standard error of mb_ratio"),
    ("mb_ratio_pool", "1", "powder MB reference of the pool entering step k"),
    ("mb_ratio_pool_err", "1", "jackknife standard error of mb_ratio_pool"),
    ("mb_ratio_dir", "1", "directional MB reference [K, n_dir] (directions: see directions)"),
    ("mb_ratio_dir_err", "1", "jackknife standard error of mb_ratio_dir"),
    ("im_chi_l_ref", "T*^2", "∫_band Im χ_l dω at the reference temperature, mean per super block (powder)"),
    ("im_chi_t_ref", "T*^2", "∫_band Im χ_t dω at the reference temperature, mean per super block (powder)"),
    ("weight_kept_mean", "1", "mean spectral weight kept by the truncation"),
    ("level_scale", "E*", "median lowest gap of the pool entering step k"),
    ("isotropy_residual", "1", "isotropy residual of the pool's ground-state spectral-weight tensor"),
    ("pool_size", "1", "pool size entering step k"),
    ("pool_distinct_ancestors", "1", "distinct initial ancestors of the pool entering step k"),
    ("pool_distinct_lineages", "1", "distinct lowest-gap lineages of the pool entering step k"),
    ("double_in_window_count", "1", "super blocks with a double excitation inside the kept window"),
)


def _summary_row(step: bio.Step) -> dict:
    d = step.diagnostics
    return {
        "step": step.index,
        "scale_L": step.scale_L,
        "scale_L_out": step.scale_L_out,
        "coupling_g": step.coupling_g,
        "mb_ratio": step.mb_ratio,
        "mb_ratio_err": step.mb_ratio_err,
        "mb_ratio_pool": step.mb_ratio_pool,
        "mb_ratio_pool_err": step.mb_ratio_pool_err,
        "mb_ratio_dir": np.asarray(step.mb_ratio_dir),
        "mb_ratio_dir_err": np.asarray(step.mb_ratio_dir_err),
        "im_chi_l_ref": float(np.mean(step.weight_l)),
        "im_chi_t_ref": float(np.mean(step.weight_t)),
        "weight_kept_mean": d["weight_kept_mean"],
        "level_scale": d["level_scale"],
        "isotropy_residual": d["isotropy_residual"],
        "pool_size": d["pool_size"],
        "pool_distinct_ancestors": d["pool_distinct_ancestors"],
        "pool_distinct_lineages": d["pool_distinct_lineages"],
        "double_in_window_count": d["double_in_window_count"],
    }


def _summary(rows: list, directions) -> dict:
    out = {}
    for name, units, description in _SUMMARY:
        out[name] = (np.array([r[name] for r in rows]), units, description)
    out["directions"] = (list(directions), "1", "directions of mb_ratio_dir")
    return out


def _step_from_values(k, values, diagnostics) -> bio.Step:
    return bio.Step(index=k, diagnostics={n: v[0] for n, v in diagnostics.items()}, **values)


class _Progress:
    """tqdm bar on a terminal, else one log line per step on stderr, or a user callback."""

    def __init__(self, mode, total: int, done: int, n_steps: int):
        self.callback = mode if callable(mode) else None
        if mode in (None, "auto", True):
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = "callback" if self.callback else mode
        self.n_steps = n_steps
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="superblock", desc="blocksim", file=sys.stderr)

    def tick(self):
        if self.bar is not None:
            self.bar.update(1)

    def step_done(self, k: int, step: bio.Step, elapsed: float):
        info = {"step": k, "n_steps": self.n_steps, "scale_L_out": step.scale_L_out, "mb_ratio": step.mb_ratio,
                "mb_ratio_err": step.mb_ratio_err, "elapsed_s": elapsed}
        if self.callback:
            self.callback(info)
        elif self.mode == "bar":
            self.bar.set_postfix_str(f"step {k}: MB={step.mb_ratio:.4g}±{step.mb_ratio_err:.2g}")
        elif self.mode == "log":
            print(
                f"blocksim: step_{k} complete ({k + 1}/{self.n_steps}): L={step.scale_L:g}→{step.scale_L_out:g} "
                f"g_k={step.coupling_g:.4g} P={step.members.shape[0]} MB={step.mb_ratio:.4f}±{step.mb_ratio_err:.4f} "
                f"(pool {step.mb_ratio_pool:.4f}) kept={step.diagnostics['weight_kept_mean']:.3f} [{elapsed:.1f} s]",
                file=sys.stderr,
                flush=True,
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------
class _SignalGuard:
    """Turns SIGTERM into :class:`RunInterrupted`, deferred while a file write is in progress."""

    def __init__(self):
        self.in_write = False
        self.pending = None
        self.previous = None

    def _handler(self, signum, frame):
        if self.in_write:
            self.pending = signum
        else:
            raise RunInterrupted(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    @contextmanager
    def writing(self):
        self.in_write = True
        try:
            yield
        finally:
            self.in_write = False
        if self.pending is not None:
            raise RunInterrupted(self.pending)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
_IGNORED_FOR_RESUME = {("run", "output"), ("run", "numba_threads"), ("run", "progress")}


def _resume_mismatch(file_cfg: Config, cfg: Config) -> str | None:
    a, b = file_cfg.to_dict(), cfg.to_dict()
    for sec in a:
        for key in sorted(set(a[sec]) | set(b[sec])):
            if (sec, key) in _IGNORED_FOR_RESUME:
                continue
            if sec == "run" and key == "seed" and cfg.run.seed is None:
                continue
            if a[sec].get(key) != b[sec].get(key):
                return f"{sec}.{key} = {b[sec].get(key)!r} differs from the partial run's {a[sec].get(key)!r}"
    return None


def _set_threads(cfg: Config) -> None:
    n = cfg.run.numba_threads
    if n:
        import numba

        if n > numba.config.NUMBA_NUM_THREADS:
            raise InputError(
                f"run.numba_threads = {n}: must be ≤ {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)"
            )
        numba.set_num_threads(n)


def _root_attrs(cfg: Config) -> dict:
    return {
        "blocksim_version": __version__,
        "git_commit": bio.git_commit(),
        "created": bio.now(),
        "config_toml": cfg.to_toml(),
        "seed_entropy": int(cfg.run.seed),
        "spawn_key": list(cfg.run.spawn_key),
        "n_steps": cfg.n_steps,
        "stream_keys": "initial pool (0,); members of step k (1, k); rotations of super block j of step k "
                       "(2, k, j); each prefixed by spawn_key",
    }


def run(config, output=None, *, resume: bool = False, force: bool = False, progress=None, overrides=()) -> Path:
    """Run a coarse-graining trajectory and return the path of its HDF5 file.

    ``config``: a :class:`Config`, a TOML path/text or a dict (``overrides`` as in :func:`load_config`).
    ``output``: the .h5 path (default ``run.output`` or ``out/<config stem>.h5``). The run writes
    ``OUT.part`` (status "running", one atomic append per complete step) and renames it to ``OUT``
    when done. An existing ``OUT`` raises InputError unless ``force`` (then it is replaced only by
    the final rename). ``resume`` continues ``OUT.part`` from its last complete step (the config must
    match; a seed left unset is taken from the file) and reproduces an uninterrupted run bit for bit.
    ``progress``: None/"auto" (tqdm bar on a terminal, else one stderr line per step), "bar", "log",
    "none" or a callable receiving a dict per step. SIGTERM marks the partial file "failed" and
    raises :class:`RunInterrupted`.

    Before any work the output is checked (not a directory, writable parent) and locked
    (:class:`blocksim.outputlock.OutputLock`, ``OUT.lock`` with pid and host): a second run on the same
    output is refused and names the first. A ``OUT.part`` left by an earlier run is refused unless
    ``resume`` (continue it) or ``force`` (discard it).
    """
    cfg = config if isinstance(config, Config) and not overrides else load_config(config, overrides)
    out = Path(output) if output is not None else cfg.output_path()
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"output = {str(out)!r}: must end in .h5 or .hdf5")
    check_output_path(out)
    part = bio.part_path(out)
    lock = OutputLock(out)
    lock.check()  # a running writer is named before anything else is said about its files
    if out.exists() and not (force or resume):
        raise InputError(f"output = {str(out)!r}: exists; use --force to replace it or --resume to continue")
    if part.exists() and not (force or resume):
        raise InputError(f"output = {str(out)!r}: a partial file {str(part)!r} from an earlier run exists; "
                         "use --resume to continue it or --force to discard it")
    if resume and not part.exists() and out.exists() and not force:
        with bio.open_trajectory(out) as tr:
            mismatch = _resume_mismatch(tr.run_config, cfg)
            if tr.status == "complete" and mismatch is None:
                log.info("%s is already complete", out)
                return out
        raise InputError(f"output = {str(out)!r}: exists and cannot be resumed ({mismatch or 'not complete'}); "
                         "use --force to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"output = {str(out)!r}: cannot create its directory ({exc.strerror or exc})") from None
    with lock:
        return _run_locked(cfg, out, part, resume, progress)


def check_output_path(out: Path) -> None:
    """Refuse an output that cannot be written, before any work: an existing directory, a parent that
    is a regular file, or a directory this process may not write to."""
    if out.is_dir():
        raise InputError(f"output = {str(out)!r}: is a directory; give a file name ending in .h5")
    anc = out.parent if str(out.parent) else Path(".")
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"output = {str(out)!r}: {str(anc)!r} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"output = {str(out)!r}: directory {str(anc)!r} is not writable")


def _run_locked(cfg: Config, out: Path, part: Path, resume: bool, progress) -> Path:
    """The run proper, while this process holds the output lock (see :func:`run`)."""
    start, pool_e, pool_t, lineage, members_history, rows = 0, None, None, None, [], []
    if resume and part.exists():
        cfg, start, pool_e, pool_t, lineage, members_history, rows = _load_partial(part, cfg)
    else:
        if resume:
            log.info("no partial file %s: starting a new run", part)
        seed = cfg.run.seed if cfg.run.seed is not None else int(np.random.SeedSequence().entropy % (1 << 63))
        cfg = load_config(cfg, {"run.seed": seed})
    _set_threads(cfg)
    n_steps = cfg.n_steps
    sizes = cfg.pool_sizes()
    total = sum(sizes[1:])
    done = sum(sizes[1 : start + 1])
    prog = _Progress(cfg.run.progress if progress is None else progress, total, done, n_steps)
    try:
        with _SignalGuard() as guard:
            try:
                if start == 0 and pool_e is None:
                    with guard.writing():
                        bio.create_file(part, _root_attrs(cfg), cfg.to_dict())
                    pool_e, pool_t = initial_pool(cfg)
                    lineage = np.arange(pool_e.shape[0], dtype=np.int64)
                for k in range(start, n_steps):
                    t0 = time.perf_counter()
                    values, diagnostics, new_e, new_t, new_lineage = compute_step(
                        cfg, k, pool_e, pool_t, lineage, members_history, tick=prog.tick
                    )
                    step = _step_from_values(k, values, diagnostics)
                    rows.append(_summary_row(step))
                    elapsed = time.perf_counter() - t0
                    with guard.writing():
                        bio.append_step(part, k, values, diagnostics, {"elapsed_s": elapsed, "finished": bio.now()},
                                        _summary(rows, cfg.observables.directions))
                    prog.step_done(k, step, elapsed)
                    members_history.append(values["members"])
                    pool_e, pool_t, lineage = new_e, new_t, new_lineage
                with guard.writing():
                    bio.update_file(
                        part,
                        attrs={"status": "complete", "finished": bio.now()},
                        datasets={
                            "final_pool/energies": (pool_e, "E*", "levels of the truncated super blocks of the "
                                                    "last step (the pool at scale N0^K)"),
                            "final_pool/stress": (pool_t, "T*", "their Mandel stress matrices [P, 6, n_keep, n_keep]"),
                            "final_pool/lineage": (lineage, "1", "lowest-gap lineage of the final pool"),
                        },
                    )
                    os.replace(part, out)
            except RunInterrupted as exc:
                exc.path = part
                _mark_failed(part, str(exc))
                raise
            except KeyboardInterrupt:
                _mark_failed(part, "interrupted by SIGINT")
                raise
            except Exception as exc:
                _mark_failed(part, f"{type(exc).__name__}: {exc}")
                raise
    finally:
        prog.close()
    return out


def _mark_failed(part: Path, reason: str) -> None:
    if part.exists():
        try:
            bio.update_file(part, attrs={"status": "failed", "failure_reason": reason, "finished": bio.now()})
        except Exception:  # pragma: no cover - never mask the original error
            log.exception("could not mark %s as failed", part)


def _load_partial(part: Path, cfg: Config):
    """State to continue ``part``: (cfg, start, pool_e, pool_t, lineage, members_history, summary rows)."""
    try:
        return _read_partial(part, cfg)
    except InputError as exc:
        text = str(exc)
        if "--force" in text:
            raise
        raise InputError(f"--resume: {text}; use --force to start over") from None


def _read_partial(part: Path, cfg: Config):
    with bio.open_trajectory(part) as tr:
        file_cfg = tr.run_config
        mismatch = _resume_mismatch(file_cfg, cfg)
        if mismatch:
            raise InputError(f"--resume: {mismatch}; use --force to start over")
        cfg = load_config(cfg, {"run.seed": file_cfg.run.seed})
        steps = tr.steps
        indices = [s.index for s in steps]
        if indices != list(range(len(indices))):
            raise InputError(f"--resume: {str(part)!r} has non-consecutive complete steps {indices}")
        if not steps:
            return cfg, 0, None, None, None, [], []
        last = steps[-1]
        rows = [_summary_row(s) for s in steps]
        history = [s.members for s in steps]
        lineage = np.asarray(last.diagnostics["lineage_out"], dtype=np.int64)
        resumed = tuple(tr.attrs.get("resumed", ())) if isinstance(tr.attrs.get("resumed"), tuple) else ()
    bio.update_file(part, attrs={"status": "running", "resumed": list(resumed) + [bio.now()],
                                 "failure_reason": ""})
    return cfg, last.index + 1, last.superblock_energies, last.superblock_stress, lineage, history, rows
