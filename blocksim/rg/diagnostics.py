"""Per-step diagnostics of the coarse-graining loop (BRIEF §1.5, §1b): arrays only.

Names, units and descriptions are the rows of :data:`blocksim.io.schema.DIAGNOSTICS`; this module
computes the values: the truncation's sum rule (weight kept), resonance counts, the lowest excluded
energy, the solver's own diagnostics, the isotropy of the pool and the pool's diversity (ancestors
and lowest-gap lineages).
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from ..model.tensors import isotropic_projection
from .pool import distinct_ancestors

__all__ = ["ground_weight_sum", "ground_weight_tensor", "step_diagnostics"]

log = logging.getLogger("blocksim.rg")


def ground_weight_tensor(stress) -> np.ndarray:
    """Pool-averaged ground-state spectral-weight tensor Σ_{m>0} ⟨0|T_a|m⟩⟨m|T_b|0⟩ ``[6, 6]`` (T*²; the T = 0 sum rule of Eq. 2.11).

    ``stress`` is the pool's Mandel stress ``[P, 6, n, n]`` in the blocks' energy eigenbases.
    """
    return ground_weight_sum(stress) / stress.shape[0]


def ground_weight_sum(stress) -> np.ndarray:
    """Σ_P Σ_{m>0} ⟨0|T_a|m⟩⟨m|T_b|0⟩ ``[6, 6]`` over the blocks of ``stress [P, 6, n, n]`` (the tree adds these up).

    One numba pass, summed over blocks then levels in order; exactly symmetric.
    """
    out = np.zeros((6, 6))
    _ground_weight_sum(np.asarray(stress, dtype=float), out)
    return out


@numba.njit(cache=True, nogil=True)
def _ground_weight_sum(stress, out):
    """out[a, b] = Σ_p Σ_m T_a0m T_b0m, each element summed over (p, m) in order, in one pass over the blocks."""
    acc = np.zeros((6, 6))
    for p in range(stress.shape[0]):
        for m in range(1, stress.shape[3]):
            for a in range(6):
                x = stress[p, a, 0, m]
                for b in range(a, 6):
                    acc[a, b] += x * stress[p, b, 0, m]
    for a in range(6):
        for b in range(a, 6):
            out[a, b] = acc[a, b]
            out[b, a] = acc[a, b]


def step_diagnostics(k: int, solved, pool_e, pool_t, lineage, new_lineage, members_history, *,
                     diversity_warn: float, warn_collapse: bool) -> dict:
    """The diagnostics of step ``k``: ``{name: array or scalar}`` (rows of ``io.schema.DIAGNOSTICS``).

    Parameters
    ----------
    k : int
        Step index (for log messages).
    solved : dict
        Per-super-block lists of :func:`blocksim.rg.step.solve_superblocks` (``trunc``, ``solver``)
        and ``n_resonance_warnings``.
    pool_e, pool_t : ndarray [P_k, n], [P_k, 6, n, n]
        The pool entering the step (E*, T*).
    lineage, new_lineage : ndarray [P_k], [P_out]
        Lowest-gap lineage of the pool and of the truncated super blocks.
    members_history : list of ndarray
        Member arrays of the earlier steps.
    diversity_warn : float
        Warn (and flag ``pool_collapsed``) when the distinct lineages fall below this fraction of P_k.
    warn_collapse : bool
        Whether to log the collapse warning (the "resample" strategy).
    """
    trunc = solved["trunc"]
    d = {}
    kept = np.array([t["weight_kept"] for t in trunc])
    d["weight_kept"] = kept
    d["weight_kept_mean"] = float(kept.mean())
    d["weight_kept_min"] = float(kept.min())
    d["lowest_excluded_energy"] = np.array([t["lowest_excluded_energy"] for t in trunc])
    dw = np.array([bool(t["double_in_window"]) for t in trunc])
    d["double_in_window"] = dw
    d["double_in_window_count"] = int(dw.sum())
    ro = np.array([bool(t["ground_reordered"]) for t in trunc])
    d["ground_reordered"] = ro
    d["ground_reordered_count"] = int(ro.sum())
    if ro.any():
        log.warning("step %d: %d of %d super blocks had an excitation below the solver's ground state "
                    "(re-sorted; see diagnostics/ground_reordered)", k, int(ro.sum()), ro.size)
    solver = solved["solver"]
    keys = sorted({key for s in solver for key, v in s.items() if isinstance(v, (int, float, np.number))})
    for key in keys:
        d[key] = np.array([float(s.get(key, np.nan)) for s in solver])
    if "n_resonant_pairs" in keys:
        d["n_resonant_pairs_total"] = int(np.nansum(d["n_resonant_pairs"]))
    if "n_resonant_single_double" in keys:
        d["n_resonant_single_double_total"] = int(np.nansum(d["n_resonant_single_double"]))
    d["n_resonance_warnings"] = int(solved["n_resonance_warnings"])
    wg = ground_weight_tensor(pool_t)
    _, _, resid = isotropic_projection(wg)
    d["pool_ground_weight_tensor"] = wg
    d["isotropy_residual"] = resid
    gaps = pool_e[:, 1]
    d["level_scale"] = float(np.median(gaps))
    d["pool_gap_mean"] = float(np.mean(gaps))
    d["pool_top_level_mean"] = float(np.mean(pool_e[:, -1]))
    p_k = pool_e.shape[0]
    lineages = int(np.unique(lineage).size)
    collapsed = lineages < diversity_warn * p_k
    d["pool_size"] = p_k
    d["pool_distinct_ancestors"] = distinct_ancestors(members_history, p_k)
    d["pool_distinct_lineages"] = lineages
    d["pool_collapsed"] = collapsed
    d["pool_lineage"] = lineage
    d["lineage_out"] = new_lineage
    if collapsed and warn_collapse:
        log.warning("step %d: pool collapse: %d distinct lowest-gap lineages in a pool of %d (< %.2g·P)",
                    k, lineages, p_k, diversity_warn)
    return d
