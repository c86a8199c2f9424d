"""One coarse-graining step (BRIEF §1.5; Eq. 3.8, 4.1 of [ZL]): solve, measure, truncate.

Step k takes the pool at scale L_k = N0^k, builds its super blocks (members
:func:`~blocksim.rg.pool.step_members`, rotations :func:`~blocksim.rg.pool.step_rotations`, coupling
g_k = g/N0^(3k)), solves each one (:func:`blocksim.spectra.solve`), measures the response
(:mod:`blocksim.rg.observables`) and truncates each super block to its lowest ``n_keep`` levels
(:meth:`blocksim.spectra.Spectrum.truncate`): the truncated super blocks, in order, are the pool of
step k+1. The values returned are the rows of :data:`blocksim.io.schema.STEP` and
:data:`~blocksim.io.schema.DIAGNOSTICS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import InputError, NonFiniteError
from ..model.coupling import displacement_table
from ..model.tensors import direction_vectors, powder_lt
from ..response import transitions_from_levels
from ..spectra import assemble_superblock, solve_counting_resonances
from ..spectra.batch import BATCH_MAX_N0, BatchSolution, solve_batch
from .diagnostics import step_diagnostics
from .observables import (
    band_weight_tensors,
    group_sums,
    reliability,
    frequency_grid,
    jackknife_ratio,
    mb_from_weights,
    reference_weights,
    response_arrays,
)
from .pool import coupling_at_step, step_members, step_rotations

log = logging.getLogger("blocksim.rg")

__all__ = ["StepResult", "batch_applies", "check_finite", "check_kept", "reorder_ground", "step_values", "compute_step", "error_units", "solve_step_batch",
           "solve_superblocks", "solve_superblock_list", "warn_unreliable"]


@dataclass(frozen=True)
class StepResult:
    """What one step hands over: the file's arrays and the next pool.

    Attributes
    ----------
    values : dict
        Every field of :data:`blocksim.io.schema.STEP` → array or scalar.
    diagnostics : dict
        Diagnostic name (:data:`blocksim.io.schema.DIAGNOSTICS`) → array or scalar.
    pool_energies, pool_stress : ndarray [P_out, n_keep], [P_out, 6, n_keep, n_keep]
        The truncated super blocks: the pool of the next step (E*, T*).
    lineage : ndarray [P_out]
        Lowest-gap lineage of the next pool.
    """

    values: dict
    diagnostics: dict
    pool_energies: np.ndarray
    pool_stress: np.ndarray
    lineage: np.ndarray


def batch_applies(cfg: Config) -> bool:
    """Whether the super blocks of a step go to :func:`~blocksim.spectra.batch.solve_batch`.

    ``solver.batched`` on, the ``"perturbative"`` solver and N0 ≤ :data:`~blocksim.spectra.batch.BATCH_MAX_N0`.
    """
    return bool(cfg.solver.batched and cfg.solver.method == "perturbative" and cfg.lattice.n0 <= BATCH_MAX_N0)


def solve_step_batch(cfg: Config, k: int, member_e, member_t, rotations, table) -> BatchSolution:
    """Solve and truncate all super blocks of step k in one call (:func:`~blocksim.spectra.batch.solve_batch`).

    Parameters
    ----------
    cfg : Config
        The run config (``batch_applies(cfg)`` must hold).
    k : int
        The step (coupling g_k = g/N0^(3k)).
    member_e, member_t : ndarray [P, N0³, n], [P, N0³, 6, n, n]
        Members of each super block (E*, T*; unrotated).
    rotations : ndarray [P, N0³, 3, 3]
        Rotation of each member.
    table : ndarray
        Λ per displacement of the N0³ cube.

    Returns
    -------
    BatchSolution
        Identical, bit for bit, to the per-super-block path (``solver.batched = false``).
    """
    window = cfg.rg.window_center if cfg.rg.truncation == "window" else None
    return solve_batch(member_e, member_t, rotations, cfg.lattice.n0, coupling_at_step(cfg, k),
                       cfg.model.cl_over_ct, cfg.model.form, table,
                       resonance_threshold=cfg.solver.resonance_threshold, n_keep=cfg.rg.n_keep,
                       window_center=window, temperatures=np.asarray(cfg.observables.temperatures, dtype=float))


def solve_superblocks(cfg: Config, k: int, pool_e, pool_t, members, table, tick) -> dict:
    """Solve and truncate every super block of step k of a pool (members ``[P_out, N0³]`` into the pool).

    The rotations come from :func:`~blocksim.rg.pool.step_rotations`; the solving is
    :func:`solve_superblock_list`, whose dict this returns (``rotations`` added).
    """
    rotations = np.array([step_rotations(cfg, k, j) for j in range(members.shape[0])])
    out = solve_superblock_list(cfg, k, pool_e[members], pool_t[members], rotations, table, tick,
                                labels=[f"super block {j} of step {k} (members {members[j].tolist()})"
                                        for j in range(members.shape[0])])
    out["rotations"] = list(rotations)
    return out


def solve_superblock_list(cfg: Config, k: int, member_e, member_t, rotations, table, tick=lambda: None,
                          labels=None) -> dict:
    """Solve and truncate a list of super blocks of step k (the one place where super blocks are solved).

    Parameters
    ----------
    cfg : Config
        The run config (solver, truncation, temperatures, lattice, coupling).
    k : int
        Step index (coupling g_k = g/N0^(3k)).
    member_e, member_t : ndarray [N, N0³, n], [N, N0³, 6, n, n]
        Levels (E*) and Mandel stress (T*) of the members of each of the N super blocks, member i at
        lattice site i.
    rotations : ndarray [N, N0³, 3, 3]
        Rotation of each member (T → R T Rᵀ).
    table : ndarray
        :func:`blocksim.model.coupling.displacement_table` of the lattice.
    tick : callable
        Called after each super block (progress).
    labels : list of str, optional
        How to name super block j in an error message.

    Returns
    -------
    dict
        Per-super-block lists ``trans`` (Transitions at the configured temperatures), ``energies``,
        ``stress`` (truncated, E*, T*), ``trunc`` (truncation diagnostics), ``solver`` (solver
        diagnostics), ``gaps``, ``exc``, ``lead`` (member carrying the first excitation), and the
        count ``n_resonance_warnings``. Where :func:`batch_applies`, all of them are solved in one call
        (:func:`solve_step_batch`, bit-identical); ``solver.batched = false`` forces the loop below.
    """
    if batch_applies(cfg):
        return _solve_list_batched(cfg, k, member_e, member_t, rotations, table, tick, labels)
    g_k = coupling_at_step(cfg, k)
    temps = np.asarray(cfg.observables.temperatures, dtype=float)
    n_keep = cfg.rg.n_keep
    out = {"trans": [], "energies": [], "stress": [], "trunc": [], "solver": [], "gaps": [], "exc": [], "lead": []}
    n_res_warn = 0
    window = cfg.rg.window_center if cfg.rg.truncation == "window" else None
    for j in range(len(member_e)):
        where = labels[j] if labels is not None else f"super block {j} of step {k}"
        sb = assemble_superblock(member_e[j], member_t[j], rotations[j], cfg.lattice.n0, g_k, cfg.model.cl_over_ct,
                                 cfg.model.form, table=table)
        spec, resonant = solve_counting_resonances(sb, cfg.solver.method,
                                                   resonance_threshold=cfg.solver.resonance_threshold,
                                                   include_doubles=cfg.solver.include_doubles)
        n_res_warn += resonant
        if len(spec.energies) < n_keep:
            raise InputError(f"rg.n_keep = {n_keep}: {where} has only {len(spec.energies)} computed states")
        e_new, t_new, diag = spec.truncate(n_keep, window)
        check_kept(cfg, where, e_new, t_new)
        e_new, t_new, reordered = reorder_ground(e_new, t_new)
        diag = dict(diag, ground_reordered=reordered)
        out["trans"].append(spec.transitions(temps))
        out["energies"].append(e_new)
        out["stress"].append(t_new)
        out["trunc"].append(diag)
        out["solver"].append(dict(spec.diagnostics))
        out["gaps"].append(spec.energies[1])
        out["exc"].append(spec.energies[1:])
        out["lead"].append(_lead_member(spec, member_e[j]))
        tick()
    out["n_resonance_warnings"] = n_res_warn
    return out


def error_units(cfg: Config, count: int):
    """Independent units of ``count`` super blocks (or pool blocks) of a step: ``(unit index or None, n_units)``.

    ``"partition"``: every super block is its own unit (disjoint members, independent draws), so
    ``(None, count)``; ``"resample"``: the ``rg.samples`` replicate pools (item j belongs to replicate
    j // (count / rg.samples)), whose copies of one another are never counted as independent.
    """
    if cfg.rg.pool_strategy != "resample":
        return None, int(count)
    reps = cfg.rg.samples
    return np.arange(count, dtype=np.int64) // (count // reps), reps


def warn_unreliable(k: int, n_eff: int, min_eff: int, reliable: bool) -> None:
    """Log a warning for an unreliable step (fewer than ``rg.min_effective_samples`` independent samples)."""
    if not reliable:
        log.warning("step %d: only %d independent sample(s) (< rg.min_effective_samples = %d): errors set to NaN, "
                    "step marked unreliable", k, n_eff, min_eff)


def check_kept(cfg: Config, where: str, e_new, t_new) -> None:
    """Stop the run on non-finite kept levels or stress of a super block (``where`` names it)."""
    if not (np.all(np.isfinite(e_new)) and np.all(np.isfinite(t_new))):
        raise RuntimeError(
            f"solver {cfg.solver.method!r} returned non-finite levels or stress for {where}; the run stops rather "
            "than propagate NaN"
        )


def reorder_ground(e_new, t_new):
    """``(levels, stress, reordered)`` with the lowest kept level as the new ground state."""
    reordered = bool(np.any(np.diff(e_new) < 0) or e_new[0] != 0.0)
    if reordered:
        # a first-order excitation fell below the dressed ground state: the lowest kept level
        # becomes the new block's ground state (counted in diagnostics/ground_reordered)
        order = np.argsort(e_new, kind="stable")
        e_new = e_new[order] - e_new[order[0]]
        t_new = t_new[:, order][:, :, order]
    return e_new, t_new, reordered


def _solve_list_batched(cfg: Config, k: int, member_e, member_t, rotations, table, tick, labels) -> dict:
    """:func:`solve_superblock_list` through :func:`solve_step_batch` (same output, bit for bit)."""
    n_sb = len(member_e)
    sol = solve_step_batch(cfg, k, member_e, member_t, rotations, table)
    out = {"trans": [], "energies": [], "stress": [], "trunc": [], "solver": [],
           "gaps": list(sol.gaps), "exc": [], "lead": list(sol.lead)}
    diag_keys = list(sol.diagnostics)
    diag_cols = [sol.diagnostics[key].tolist() for key in diag_keys]
    for j in range(n_sb):
        e_new, t_new = sol.energies[j], sol.stress[j]
        check_kept(cfg, labels[j] if labels is not None else f"super block {j} of step {k}", e_new, t_new)
        e_new, t_new, reordered = reorder_ground(e_new, t_new)
        out["energies"].append(e_new)
        out["stress"].append(t_new)
        out["trunc"].append({"weight_kept": float(sol.weight_kept[j]),
                             "lowest_excluded_energy": float(sol.lowest_excluded_energy[j]),
                             "double_in_window": bool(sol.double_in_window[j]), "ground_reordered": reordered})
        out["solver"].append(dict(zip(diag_keys, (col[j] for col in diag_cols))))
        out["exc"].append(sol.excitations[sol.excitation_offsets[j]:sol.excitation_offsets[j + 1]])
        out["trans"].append(sol.transitions(j))
        tick()
    out["n_resonance_warnings"] = sol.n_resonance_warnings
    return out


def step_values(cfg: Config, k: int, centres, edges, band, **fields) -> dict:
    """The :data:`blocksim.io.schema.STEP` values of step k: those fixed by the config and the ω grid, then ``fields``.

    ``centres``, ``edges``: the step's grid (E*); ``band``: the MB reference band (E*). Every strategy
    (:func:`compute_step`, :func:`blocksim.rg.tree.merge_samples`) builds its step through this.
    """
    obs = cfg.observables
    return {
        "scale_L": float(cfg.lattice.n0**k),
        "scale_L_out": float(cfg.lattice.n0 ** (k + 1)),
        "coupling_g": coupling_at_step(cfg, k),
        "omega": centres,
        "omega_edges": edges,
        "temperature": np.asarray(obs.temperatures, dtype=float),
        "directions": list(obs.directions),
        "reference_temperature": float(cfg.reference_temperature),
        "reference_band": np.array(band),
        **fields,
    }


def check_finite(k: int, values: dict, line, omega_min, omega_max) -> None:
    """Stop the run on any NaN/±inf observable of step ``k`` (standard errors ``*_err`` may be NaN).

    Raises :class:`~blocksim.errors.NonFiniteError` naming the dataset and the count; ``line``,
    ``omega_min``, ``omega_max`` (the grid settings) are quoted in the message.
    """
    for name, value in values.items():
        if name.endswith("_err") or isinstance(value, (str, list)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise NonFiniteError(
                f"step {k}: {name} has {bad} non-finite value(s) (observables.line = {line!r}, "
                f"omega_min = {omega_min!r}, omega_max = {omega_max!r}); the run stops before writing it"
            )


def _lead_member(spec, member_energies) -> int:
    """Member whose excitation dominates the super block's first excited state."""
    labels = getattr(spec, "labels", None)
    if labels is not None and len(labels) > 1:
        excited = np.nonzero(np.asarray(labels[1]))[0]
        if excited.size:
            return int(excited[0])
    return int(np.argmin(member_energies[:, 1]))


def compute_step(cfg: Config, k: int, pool_e, pool_t, lineage, members_history, tick=lambda: None) -> StepResult:
    """Run step k (Eq. 3.8, 4.1 of [ZL]) on the pool ``(pool_e [P_k, n], pool_t [P_k, 6, n, n])``.

    ``lineage`` [P_k] gives the initial block carrying each pool block's lowest excitation;
    ``members_history`` the member arrays of the earlier steps. Returns a :class:`StepResult`.
    """
    obs = cfg.observables
    p_k = pool_e.shape[0]
    members = step_members(cfg, k, p_k)
    table = displacement_table(cfg.lattice.n0, cfg.model.cl_over_ct, cfg.model.form)
    sol = solve_superblocks(cfg, k, pool_e, pool_t, members, table, tick)
    p_out = members.shape[0]

    # the ω grid, the response arrays and the MB reference of the super blocks
    edges, centres = frequency_grid(sol["gaps"], np.concatenate(sol["exc"]), obs.omega_points,
                                    obs.omega_min, obs.omega_max)
    span = np.log(edges[-1] / edges[0])
    band = tuple(float(edges[0] * np.exp(f * span)) for f in obs.reference_band)
    e_l, e_t = direction_vectors(obs.directions)
    width = None if obs.line == "bins" else obs.width * edges[0]
    resp = response_arrays(sol["trans"], edges, centres, e_l, e_t, line=obs.line, width=width)
    t_ref = cfg.reference_temperature
    w = reference_weights(sol["trans"], list(obs.temperatures).index(t_ref), band)
    wl, wt = powder_lt(w)
    # errors from independent units: partition: the super blocks (disjoint members); resample: the
    # rg.samples replicate pools (copies inside one pool are not independent, BRIEF §1b)
    unit_sb, n_eff = error_units(cfg, p_out)
    _, _, mb, mb_err, mb_dir, mb_dir_err = mb_from_weights(
        w if unit_sb is None else group_sums(w, unit_sb, n_eff), e_l, e_t)

    # the same reference for the uncoupled pool blocks
    pool_tr = transitions_from_levels(pool_e, pool_t, [t_ref])
    seg = np.repeat(np.arange(p_k), pool_tr.size // p_k)
    w_pool = band_weight_tensors(pool_tr.omega, pool_tr.amp, pool_tr.population[0], t_ref, seg, p_k, band)
    wpl, wpt = powder_lt(w_pool[members].sum(axis=1))  # per super block: Σ of its members, uncoupled
    unit_pool, n_eff_pool = error_units(cfg, p_k)
    mb_pool, mb_pool_err = jackknife_ratio(
        *powder_lt(w_pool if unit_pool is None else group_sums(w_pool, unit_pool, n_eff_pool)))
    reliable, errs = reliability(n_eff, cfg.rg.min_effective_samples,
                                 {"mb_ratio_err": mb_err, "mb_ratio_dir_err": mb_dir_err})
    mb_err, mb_dir_err = errs["mb_ratio_err"], errs["mb_ratio_dir_err"]
    if n_eff_pool < cfg.rg.min_effective_samples:
        mb_pool_err = float("nan")
    warn_unreliable(k, n_eff, cfg.rg.min_effective_samples, reliable)

    new_e = np.array(sol["energies"])
    new_t = np.array(sol["stress"])
    lead = np.array(sol["lead"], dtype=np.int64)
    new_lineage = lineage[members[np.arange(p_out), lead]]

    values = step_values(
        cfg, k, centres, edges, band, **resp,
        mb_ratio=mb, mb_ratio_err=mb_err, mb_ratio_pool=mb_pool, mb_ratio_pool_err=mb_pool_err,
        n_effective=int(n_eff), reliable=bool(reliable), mb_ratio_dir=mb_dir, mb_ratio_dir_err=mb_dir_err,
        weight_tensor=w, weight_l=wl, weight_t=wt, weight_pool_l=wpl, weight_pool_t=wpt,
        pool_energies=pool_e, pool_stress=pool_t, members=members, rotations=np.array(sol["rotations"]),
        superblock_energies=new_e, superblock_stress=new_t)
    check_finite(k, values, obs.line, obs.omega_min, obs.omega_max)
    diagnostics = step_diagnostics(k, sol, pool_e, pool_t, lineage, new_lineage, members_history,
                                   diversity_warn=cfg.rg.diversity_warn,
                                   warn_collapse=cfg.rg.pool_strategy == "resample")
    return StepResult(values, diagnostics, new_e, new_t, new_lineage)
