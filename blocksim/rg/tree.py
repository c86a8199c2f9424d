"""The "tree" pool strategy: independent depth-first trees of bare blocks (BRIEF §1b "Pool collapse").

Each of the ``rg.samples`` final samples s is its own tree: the root (level K) is the final block,
a node at level ℓ ≥ 1 is the truncated super block of its N0³ children at level ℓ − 1, and the
N0^(3K) leaves (level 0) are fresh bare blocks. A node is named by its *path*, the child indices
from the root (the root's path is empty; a node at level ℓ has a path of length K − ℓ; child i sits
on lattice site i). Super block "of step k" = a node at level k + 1. No block is used twice, so the
samples and the disjoint subtrees of one sample are independent by construction.

Random streams (``SeedSequence(run.seed, spawn_key=run.spawn_key + key)``):

* ``(3, s, *path)`` for a *chunk root*, a node at level b = :func:`chunk_level` (the smallest level
  with N0^(3b) ≥ :data:`CHUNK_MIN_LEAVES`, at most K): its N0^(3b) bare blocks (one
  :func:`~blocksim.model.blocks.make_blocks` call, leaves in path order), then the rotations of
  its internal super blocks (levels 1 … b, level by level, path order within a level;
  one :func:`~blocksim.model.tensors.random_rotation` call of N0³ per super block, concatenated);
* ``(4, s, *path)`` for the rotations of a super block above level b.

The tree is evaluated depth first, breadth first below the level where at most
:data:`BATCH_CHUNKS` chunk roots lie beneath (so one :func:`~blocksim.rg.step.solve_superblock_list`
call solves up to BATCH_CHUNKS·N0^(3(b−1)) super blocks of one step). Memory per sample is
O(K·N0³·n²) blocks on the stack plus that constant batch. Nothing depends on threads or workers:
every number comes from the streams above, and every sum runs in path order within a sample and in
sample order across samples (:func:`merge_samples`).

Per step k, each sample accumulates (:class:`TreeAccumulator`): the response tensors Σ Im χ_ab, Σ Re χ_ab
over its super blocks of step k (on the fixed ω grid, ``observables.omega_min``/``omega_max``), the band
weight tensors W_ab of its super blocks and of the blocks entering them, summed per *unit* (the
subtree rooted at level :func:`unit_level`: disjoint, hence independent; the jackknife units), and
the diagnostic sums. Stored subset (:data:`STORED_SUBSET`): for each sample, the super blocks of
step k that are children of the node at level k + 2 with path (0, …, 0) (the root's children at the
last-but-one step; the root itself at the last step), with their members, rotations and levels.
"""

from __future__ import annotations

import numpy as np

from .. import io as bio
from .._malloc import keep_freed_memory
from .._threads import single_blas
from ..config import Config
from ..model.blocks import make_blocks_then
from ..model.coupling import displacement_table
from ..model.tensors import direction_vectors, random_rotation, rotations_from_normals
from ..response import Transitions, chi_tensors
from ..model.tensors import isotropic_projection, powder_lt
from .diagnostics import ground_weight_sum, step_diagnostics
from .observables import (
    add_rows_at,
    band_weight_tensors,
    frequency_grid,
    jackknife_ratio,
    level_band_weights,
    mb_from_weights,
    reliability,
    response_from_tensors,
)
from .pool import stream_rng
from .step import (
    batch_applies,
    check_finite,
    check_kept,
    reorder_ground,
    solve_step_batch,
    solve_superblock_list,
    step_values,
    warn_unreliable,
)

__all__ = [
    "STREAM_TREE_CHUNK",
    "STREAM_TREE_ROTATIONS",
    "CHUNK_MIN_LEAVES",
    "BATCH_CHUNKS",
    "MAX_UNITS",
    "STORED_SUBSET",
    "TreeAccumulator",
    "chunk_level",
    "unit_level",
    "tree_grid",
    "run_sample",
    "merge_samples",
    "SOLVER_DIAGNOSTICS",
]

STREAM_TREE_CHUNK = 3
STREAM_TREE_ROTATIONS = 4
#: A chunk root holds at least this many bare blocks (one stream per chunk).
CHUNK_MIN_LEAVES = 64
#: Breadth-first evaluation below the level with at most this many chunk roots.
BATCH_CHUNKS = 512
#: Jackknife units per step: the subtrees at level unit_level(k), at most this many over all samples.
MAX_UNITS = 4096
#: The rule for the stored members/rotations (written to the file's root attribute ``tree_stored_subset``).
STORED_SUBSET = ("tree: per step k and sample s, the super blocks of step k that are the children of the node at "
                 "level k+2 with path (0,...,0) (the root itself at the last step), in sample order then path "
                 "order; pool_* are their members (members = arange), superblocks/* their truncated blocks; "
                 "response arrays, MB and the diagnostic totals cover every super block of the step")

#: The solver diagnostics summed per step (keys of Spectrum.diagnostics).
_SOLVER_SUMS = ("n_resonant_pairs", "n_resonant_single_double")
#: The per-super-block solver diagnostics of the file (rows of io.schema.DIAGNOSTICS).
SOLVER_DIAGNOSTICS = tuple(d.name for d in bio.schema.DIAGNOSTICS if "solver diagnostic" in d.description)


def chunk_level(cfg: Config) -> int:
    """Level b of the chunk roots: the smallest b with N0^(3b) ≥ CHUNK_MIN_LEAVES, at most K."""
    b = 1
    while cfg.members**b < CHUNK_MIN_LEAVES and b < cfg.n_steps:
        b += 1
    return min(b, cfg.n_steps)


def unit_level(cfg: Config, k: int) -> int:
    """Level of the jackknife units of step k: the lowest level ≥ k + 1 with ≤ MAX_UNITS nodes in all samples."""
    level = k + 1
    while level < cfg.n_steps and cfg.rg.samples * cfg.members ** (cfg.n_steps - level) > MAX_UNITS:
        level += 1
    return level


def tree_grid(cfg: Config):
    """``(edges [n_ω+1], centres [n_ω], band (lo, hi))`` of every step of a tree run (fixed grid, E*)."""
    obs = cfg.observables
    edges, centres = frequency_grid([], [], obs.omega_points, obs.omega_min, obs.omega_max)
    span = np.log(edges[-1] / edges[0])
    band = tuple(float(edges[0] * np.exp(f * span)) for f in obs.reference_band)
    return edges, centres, band


class TreeAccumulator:
    """What one sample contributes to every step (plain arrays; picklable, savable with ``np.savez``).

    ``data[f"{k}/{name}"]`` for step k: ``count`` (super blocks), ``im_sum``/``re_sum`` [n_T, n_ω, 6, 6]
    (Σ of the super blocks' χ tensors, V = 1 each), ``w_units``/``w_pool_units`` [units, 6, 6] (band
    weights summed per unit), diagnostic sums, and the stored subset (``store_*``). ``final_e``,
    ``final_t``: the sample's root block.
    """

    def __init__(self, cfg: Config, sample: int):
        self.cfg = cfg
        self.sample = int(sample)
        self.data: dict[str, np.ndarray] = {}
        self.stored: dict[int, list] = {}
        obs = cfg.observables
        n_t, n_w = len(obs.temperatures), obs.omega_points
        for k in range(cfg.n_steps):
            units = cfg.members ** (cfg.n_steps - unit_level(cfg, k))
            zero = {"count": np.zeros((), np.int64), "im_sum": np.zeros((n_t, n_w, 6, 6)),
                    "re_sum": np.zeros((n_t, n_w, 6, 6)), "w_units": np.zeros((units, 6, 6)),
                    "w_pool_units": np.zeros((units, 6, 6)), "weight_kept_sum": np.zeros(()),
                    "weight_kept_min": np.full((), np.inf), "double_in_window_count": np.zeros((), np.int64),
                    "ground_reordered_count": np.zeros((), np.int64), "n_resonance_warnings": np.zeros((), np.int64),
                    "pool_gap_sum": np.zeros(()), "pool_top_sum": np.zeros(()),
                    "pool_ground_weight_sum": np.zeros((6, 6))}
            for key in _SOLVER_SUMS:
                zero[f"{key}_total"] = np.zeros((), np.int64)
            for name, value in zero.items():
                self.data[f"{k}/{name}"] = value

    def arrays(self) -> dict:
        """Every accumulated array, stored subset included (``store/{k}/{field}``), as one flat dict."""
        out = dict(self.data)
        for k, rows in self.stored.items():
            for field in rows[0]:
                vals = [r[field] for r in rows]
                out[f"store/{k}/{field}"] = np.stack(vals)
        return out


class _TreeBuilder:
    """Depth-first evaluation of one sample's tree, accumulating every step (see the module docstring)."""

    def __init__(self, cfg: Config, sample: int, tick=lambda: None):
        self.cfg = cfg
        self.s = int(sample)
        self.m = cfg.members
        self.K = cfg.n_steps
        self.b = chunk_level(cfg)
        self.tick = tick
        self.table = displacement_table(cfg.lattice.n0, cfg.model.cl_over_ct, cfg.model.form)
        self.edges, self.centres, self.band = tree_grid(cfg)
        self.temps = np.asarray(cfg.observables.temperatures, dtype=float)
        self.t_ref = cfg.reference_temperature
        self.i_ref = list(cfg.observables.temperatures).index(self.t_ref)
        self.acc = TreeAccumulator(cfg, sample)
        self.width = None if cfg.observables.line == "bins" else cfg.observables.width * self.edges[0]
        self.grid = self.edges if cfg.observables.line == "bins" else self.centres
        self._leaf_suffixes = None  # the paths of a chunk's leaves below its root (computed once)

    # -- the recursion ----------------------------------------------------------------------
    def build(self, paths: list, level: int):
        """Blocks ``(e [len(paths), n], t [len(paths), 6, n, n])`` of the nodes ``paths`` at ``level``."""
        if level == self.b:
            return self._chunks(paths)
        if len(paths) > 1 and len(paths) * self.m ** (level - self.b) > BATCH_CHUNKS:
            parts = [self.build([p], level) for p in paths]
            return np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts])
        child_e, child_t = self.build([p + (i,) for p in paths for i in range(self.m)], level - 1)
        rots = np.array([random_rotation(stream_rng(self.cfg, STREAM_TREE_ROTATIONS, self.s, *p), self.m)
                         for p in paths])
        return self._solve(level - 1, paths, child_e, child_t, rots)

    def _chunks(self, roots: list):
        """Evaluate the chunks rooted at ``roots`` (level b): draw their leaves and rotations, solve levels 1…b."""
        m, b = self.m, self.b
        n_int = [m ** (b - j) for j in range(1, b + 1)]  # super blocks per chunk at levels 1..b
        n_rot = m * sum(n_int)
        # each chunk root's stream: its leaves (make_blocks), then the normals of its rotations
        # (random_rotation); the draws are made stream by stream and turned into blocks and rotations
        # for all roots at once (the same numbers as one make_blocks and random_rotation call per root)
        e, t, normals = make_blocks_then([stream_rng(self.cfg, STREAM_TREE_CHUNK, self.s, *p) for p in roots], m**b,
                                         self.cfg.model.block_spec(), lambda rng: rng.standard_normal((n_rot, 4)))
        r_all = rotations_from_normals(np.concatenate(normals)).reshape(len(roots), n_rot, 3, 3)
        rots, start = [], 0
        for j in range(b):
            rots.append(r_all[:, start : start + m * n_int[j]].reshape(len(roots) * n_int[j], m, 3, 3))
            start += m * n_int[j]
        if self._leaf_suffixes is None:  # suffixes[j]: the paths below a chunk root of its nodes at level j + 1
            self._leaf_suffixes = [[_digits(q, b - j - 1, m) for q in range(m ** (b - j - 1))] for j in range(b)]
        for j in range(b):  # solve level j+1 (step j); its nodes in path order
            paths = [p + q for p in roots for q in self._leaf_suffixes[j]]
            e, t = self._solve(j, paths, e, t, rots[j])
        return e, t

    # -- one batch of super blocks of one step -------------------------------------------------
    def _solve(self, k: int, paths: list, child_e, child_t, rots):
        """Solve the super blocks ``paths`` (level k+1) of step k from their children; accumulate step k."""
        m, cfg = self.m, self.cfg
        n = child_e.shape[-1]
        member_e = child_e.reshape(len(paths), m, n)
        member_t = child_t.reshape(len(paths), m, 6, n, n)
        if batch_applies(cfg):
            sol = _batch_rows(cfg, k, paths, self.s, member_e, member_t, rots, self.table)
        else:
            sol = _list_rows(solve_superblock_list(cfg, k, member_e, member_t, rots, self.table, labels=[
                _label(p, self.s, k) for p in paths]), self.temps)
        for _ in paths:
            self.tick()
        self._accumulate(k, paths, member_e, member_t, rots, sol)
        return sol["energies"], sol["stress"]

    def _accumulate(self, k, paths, member_e, member_t, rots, sol):
        a = self.acc.data
        pre = f"{k}/"
        n_sb = len(paths)
        joined = Transitions(omega=sol["omega"], amp=sol["amp"], population=sol["population"],
                             temperatures=self.temps, volume=1.0)
        line = self.cfg.observables.line
        im, re = chi_tensors(joined, self.grid, ("im_chi", "re_chi"), line=line, width=self.width)
        a[pre + "im_sum"] += im
        a[pre + "re_sum"] += re
        a[pre + "count"] += n_sb
        # band weights per unit (the subtree at unit_level(k)); path[:K − level] names the unit
        depth = self.K - unit_level(self.cfg, k)
        unit = np.array([_index(p[:depth], m=self.m) for p in paths], dtype=np.int64)
        seg = np.repeat(np.arange(n_sb), np.diff(sol["offsets"]))
        w = band_weight_tensors(joined.omega, joined.amp, joined.population[self.i_ref], self.t_ref, seg, n_sb,
                                self.band)
        add_rows_at(a[pre + "w_units"], unit, w)
        flat_e = member_e.reshape(-1, member_e.shape[-1])
        flat_t = member_t.reshape((-1,) + member_t.shape[2:])
        wp = level_band_weights(flat_e, flat_t, self.t_ref, self.band)
        add_rows_at(a[pre + "w_pool_units"], np.repeat(unit, self.m), wp)
        # diagnostic sums
        kept = sol["weight_kept"]
        a[pre + "weight_kept_sum"] += kept.sum()
        a[pre + "weight_kept_min"] = np.minimum(a[pre + "weight_kept_min"], kept.min())
        a[pre + "double_in_window_count"] += int(np.count_nonzero(sol["double_in_window"]))
        a[pre + "ground_reordered_count"] += int(np.count_nonzero(sol["ground_reordered"]))
        a[pre + "n_resonance_warnings"] += sol["n_resonance_warnings"]
        for key in _SOLVER_SUMS:
            if key in sol["solver"]:
                a[f"{pre}{key}_total"] += int(np.nansum(sol["solver"][key]))
        a[pre + "pool_gap_sum"] += flat_e[:, 1].sum()
        a[pre + "pool_top_sum"] += flat_e[:, -1].sum()
        a[pre + "pool_ground_weight_sum"] += ground_weight_sum(flat_t)
        # the stored subset: children of the all-zero node at level k + 2 (the root at the last step)
        for j, p in enumerate(paths):
            if any(p[:-1]) if k < self.K - 1 else False:
                continue
            self.acc.stored.setdefault(k, []).append({
                "member_e": member_e[j], "member_t": member_t[j], "rotations": rots[j],
                "energies": sol["energies"][j], "stress": sol["stress"][j], "weight_tensor": w[j],
                "weight_kept": float(sol["weight_kept"][j]),
                "lowest_excluded_energy": float(sol["lowest_excluded_energy"][j]),
                "double_in_window": bool(sol["double_in_window"][j]),
                "ground_reordered": bool(sol["ground_reordered"][j]),
                **{f"solver/{key}": float(sol["solver"][key][j]) if key in sol["solver"] else np.nan
                   for key in SOLVER_DIAGNOSTICS},
            })


def _label(path: tuple, sample: int, k: int) -> str:
    """How an error message names a super block of a tree."""
    return f"super block {path} of tree sample {sample}, step {k}"


def _batch_rows(cfg: Config, k: int, paths: list, sample: int, member_e, member_t, rots, table) -> dict:
    """The super blocks of one batch as arrays, from :func:`~blocksim.rg.step.solve_step_batch`.

    The same levels, stress, transitions and diagnostics as :func:`~blocksim.rg.step.solve_superblock_list`
    gives super block by super block (its finiteness check and ground reordering applied row-wise).
    """
    sol = solve_step_batch(cfg, k, member_e, member_t, rots, table)
    e_new, t_new = sol.energies, sol.stress
    finite = np.isfinite(e_new).all(axis=1) & np.isfinite(t_new).reshape(len(paths), -1).all(axis=1)
    if not finite.all():
        j = int(np.argmin(finite))
        check_kept(cfg, _label(paths[j], sample, k), e_new[j], t_new[j])
    reordered = np.any(np.diff(e_new, axis=1) < 0, axis=1) | (e_new[:, 0] != 0.0)
    if reordered.any():
        e_new, t_new = e_new.copy(), t_new.copy()
        for j in np.flatnonzero(reordered):
            e_new[j], t_new[j], _ = reorder_ground(e_new[j], t_new[j])
    return {"energies": e_new, "stress": t_new, "omega": sol.omega, "amp": sol.amp, "population": sol.population,
            "offsets": sol.transition_offsets, "weight_kept": sol.weight_kept,
            "lowest_excluded_energy": sol.lowest_excluded_energy, "double_in_window": sol.double_in_window,
            "ground_reordered": reordered, "solver": sol.diagnostics,
            "n_resonance_warnings": int(sol.n_resonance_warnings)}


def _list_rows(sol: dict, temps) -> dict:
    """:func:`~blocksim.rg.step.solve_superblock_list`'s per-super-block lists as the arrays of :func:`_batch_rows`."""
    trans = sol["trans"]
    trunc = sol["trunc"]
    keys = sorted({key for d in sol["solver"] for key in d})
    return {"energies": np.array(sol["energies"]), "stress": np.array(sol["stress"]),
            "omega": np.concatenate([t.omega for t in trans]), "amp": np.concatenate([t.amp for t in trans]),
            "population": np.concatenate([t.population for t in trans], axis=1),
            "offsets": np.concatenate([[0], np.cumsum([t.size for t in trans])]).astype(np.int64),
            "weight_kept": np.array([t["weight_kept"] for t in trunc]),
            "lowest_excluded_energy": np.array([t["lowest_excluded_energy"] for t in trunc]),
            "double_in_window": np.array([bool(t["double_in_window"]) for t in trunc]),
            "ground_reordered": np.array([bool(t["ground_reordered"]) for t in trunc]),
            "solver": {key: np.array([float(d.get(key, np.nan)) for d in sol["solver"]]) for key in keys},
            "n_resonance_warnings": int(sol["n_resonance_warnings"])}


def _digits(q: int, length: int, m: int) -> tuple:
    """Base-m digits of q, most significant first, ``length`` of them (a sub-path)."""
    out = []
    for _ in range(length):
        out.append(q % m)
        q //= m
    return tuple(reversed(out))


def _index(path: tuple, m: int) -> int:
    """The base-m number of a path (the index of the node among its level's nodes in path order)."""
    i = 0
    for d in path:
        i = i * m + int(d)
    return i


def run_sample(cfg: Config, sample: int, tick=lambda: None) -> dict:
    """Build tree ``sample`` of a ``"tree"`` run and return its accumulated arrays (:class:`TreeAccumulator`).

    Parameters
    ----------
    cfg : Config
        A resolved config (``run.seed`` set) with ``rg.pool_strategy = "tree"``.
    sample : int
        The sample (tree) index s, 0 ≤ s < ``rg.samples``.
    tick : callable
        Called after each super block (progress).

    Returns
    -------
    dict
        ``{name: ndarray}``: the per-step sums and the stored subset (see :class:`TreeAccumulator`),
        ``final_e [n_keep]`` and ``final_t [6, n_keep, n_keep]`` (the root block).
    """
    keep_freed_memory()
    builder = _TreeBuilder(cfg, sample, tick)
    with single_blas():
        e, t = builder.build([()], cfg.n_steps)
    out = builder.acc.arrays()
    out["final_e"], out["final_t"] = e[0], t[0]
    return out


def merge_samples(cfg: Config, samples: list) -> tuple[list, np.ndarray, np.ndarray]:
    """Merge the samples' arrays (:func:`run_sample`, in sample order) into the steps of one trajectory.

    Parameters
    ----------
    cfg : Config
        The resolved config of the run.
    samples : list of dict
        ``samples[s]`` is :func:`run_sample` ``(cfg, s)``, for every s < ``rg.samples``.

    Returns
    -------
    steps : list of (values, diagnostics)
        Per step k: the :data:`blocksim.io.schema.STEP` values and the diagnostics.
    final_e, final_t : ndarray [S, n_keep], [S, 6, n_keep, n_keep]
        The samples' root blocks (the final pool).

    Every sum runs in sample order, so the result is the same whichever process built which sample.
    """
    obs = cfg.observables
    edges, centres, band = tree_grid(cfg)
    e_l, e_t = direction_vectors(obs.directions)
    min_eff = cfg.rg.min_effective_samples
    steps = []
    for k in range(cfg.n_steps):
        pre = f"{k}/"

        def total(name, pre=pre):
            out = samples[0][pre + name].copy()
            for smp in samples[1:]:
                out = out + smp[pre + name]
            return out

        count = int(total("count"))
        resp = response_from_tensors(total("im_sum") / count, total("re_sum") / count, e_l, e_t)
        w_units = np.concatenate([smp[pre + "w_units"] for smp in samples])
        n_eff = w_units.shape[0]
        per_unit = count // n_eff
        wl, wt = powder_lt(w_units / per_unit)
        _, _, mb, mb_err, mb_dir, mb_dir_err = mb_from_weights(w_units, e_l, e_t)
        wp_units = np.concatenate([smp[pre + "w_pool_units"] for smp in samples])
        wpl, wpt = powder_lt(wp_units / per_unit)
        mb_pool, mb_pool_err = jackknife_ratio(*powder_lt(wp_units))
        reliable, errs = reliability(n_eff, min_eff, {"mb_ratio_err": mb_err, "mb_ratio_dir_err": mb_dir_err,
                                                      "mb_ratio_pool_err": mb_pool_err})
        warn_unreliable(k, n_eff, min_eff, reliable)
        fields = [key.split("/", 2)[2] for key in samples[0] if key.startswith(f"store/{k}/")]
        st = {f: np.concatenate([smp[f"store/{k}/{f}"] for smp in samples]) for f in fields}
        n_st, m = st["member_e"].shape[:2]
        pool_e = st["member_e"].reshape(n_st * m, -1)
        pool_t = st["member_t"].reshape((n_st * m,) + st["member_t"].shape[2:])
        values = step_values(
            cfg, k, centres, edges, band, **resp,
            mb_ratio=mb, mb_ratio_err=errs["mb_ratio_err"], mb_ratio_pool=mb_pool,
            mb_ratio_pool_err=errs["mb_ratio_pool_err"], n_effective=int(n_eff), reliable=bool(reliable),
            mb_ratio_dir=mb_dir, mb_ratio_dir_err=errs["mb_ratio_dir_err"], weight_tensor=w_units / per_unit,
            weight_l=wl, weight_t=wt, weight_pool_l=wpl, weight_pool_t=wpt, pool_energies=pool_e, pool_stress=pool_t,
            members=np.arange(n_st * m, dtype=np.int64).reshape(n_st, m), rotations=st["rotations"],
            superblock_energies=st["energies"], superblock_stress=st["stress"])
        check_finite(k, values, obs.line, obs.omega_min, obs.omega_max)
        steps.append((values, _diagnostics(cfg, k, st, pool_e, pool_t, total, count, samples)))
    final_e = np.stack([smp["final_e"] for smp in samples])
    final_t = np.stack([smp["final_t"] for smp in samples])
    return steps, final_e, final_t


def _diagnostics(cfg: Config, k: int, st: dict, pool_e, pool_t, total, count: int, samples: list) -> dict:
    """Diagnostics of tree step k: per-super-block arrays of the stored subset, totals over every super block."""
    solved = {
        "trunc": [{"weight_kept": float(st["weight_kept"][j]),
                   "lowest_excluded_energy": float(st["lowest_excluded_energy"][j]),
                   "double_in_window": bool(st["double_in_window"][j]),
                   "ground_reordered": bool(st["ground_reordered"][j])} for j in range(len(st["weight_kept"]))],
        "solver": [{key: float(st[f"solver/{key}"][j]) for key in SOLVER_DIAGNOSTICS
                    if np.isfinite(st[f"solver/{key}"][j])} for j in range(len(st["weight_kept"]))],
        "n_resonance_warnings": int(total("n_resonance_warnings")),
    }
    n_pool = pool_e.shape[0]
    lineage = np.arange(n_pool, dtype=np.int64)
    d = step_diagnostics(k, solved, pool_e, pool_t, lineage, lineage[:: cfg.members], [],
                         diversity_warn=cfg.rg.diversity_warn, warn_collapse=False)
    pool_total = count * cfg.members
    d["weight_kept_mean"] = float(total("weight_kept_sum")) / count
    d["weight_kept_min"] = float(min(float(smp[f"{k}/weight_kept_min"]) for smp in samples))
    d["double_in_window_count"] = int(total("double_in_window_count"))
    d["ground_reordered_count"] = int(total("ground_reordered_count"))
    for key in _SOLVER_SUMS:
        d[f"{key}_total"] = int(total(f"{key}_total"))
    wg = total("pool_ground_weight_sum") / pool_total
    d["pool_ground_weight_tensor"] = wg
    d["isotropy_residual"] = isotropic_projection(wg)[2]
    d["pool_gap_mean"] = float(total("pool_gap_sum")) / pool_total
    d["pool_top_level_mean"] = float(total("pool_top_sum")) / pool_total
    d["pool_size"] = int(pool_total)
    d["pool_distinct_ancestors"] = int(cfg.rg.samples * cfg.members**cfg.n_steps)
    d["pool_distinct_lineages"] = int(pool_total)
    d["pool_collapsed"] = False
    return d


# --------------------------------------------------------------------------------------------
# Sample files: what a finished sample leaves on disk (resume, process pools, SLURM shards)
# --------------------------------------------------------------------------------------------
def samples_dir(output) -> "Path":
    """The directory of a tree run's finished samples: ``OUT.h5`` → ``OUT.h5.samples/``."""
    from pathlib import Path

    output = Path(output)
    return output.with_name(output.name + ".samples")


def sample_path(directory, sample: int) -> "Path":
    """``DIR/sample_000123.npz``: the arrays of one finished sample."""
    from pathlib import Path

    return Path(directory) / f"sample_{int(sample):06d}.npz"


def save_sample(directory, cfg: Config, sample: int, arrays: dict) -> None:
    """Write one sample's arrays atomically (temporary name, then rename), with the config that made them."""
    import os

    path = sample_path(directory, sample)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, __config_toml__=np.array(cfg.to_toml()), **arrays)
    os.replace(tmp, path)


def load_sample(directory, cfg: Config, sample: int):
    """The arrays of a finished sample made with this config (seed included), or None."""
    from ..config import load_config
    from .control import resume_mismatch

    path = sample_path(directory, sample)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if resume_mismatch(load_config(str(z["__config_toml__"])), cfg) is not None:
                return None
            return {key: z[key] for key in z.files if key != "__config_toml__"}
    except (OSError, ValueError, KeyError):
        return None  # a torn or foreign file: the sample is recomputed


def compute_samples(cfg: Config, directory, indices, *, workers: int = 1, client=None, tick=lambda: None,
                    log=None) -> None:
    """Build the trees ``indices`` that ``directory`` lacks and save each one there as it finishes.

    ``workers`` > 1 uses a pool of spawned processes (one sample per task); ``client`` (a
    ``distributed.Client``: LocalCluster, SLURMCluster, a scheduler) maps the samples onto its workers,
    which must see ``directory``. Every sample is a function of (config, index) alone, so the files do
    not depend on ``workers`` or ``client``.
    """
    indices = list(indices)
    todo = [s for s in indices if load_sample(directory, cfg, s) is None]
    if log is not None:
        how = "dask" if client is not None else f"{workers} worker process(es)"
        log(f"tree: {len(indices) - len(todo)} of {len(indices)} sample(s) already done; {len(todo)} to build "
            f"with {how}")
    if client is not None and todo:
        futures = client.map(_sample_task, [cfg.to_toml()] * len(todo), [str(directory)] * len(todo), todo,
                             pure=False)
        client.gather(futures)
        return
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            save_sample(directory, cfg, s, run_sample(cfg, s, tick))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                             initializer=_one_thread_per_worker) as pool:
        futures = [pool.submit(_sample_task, cfg.to_toml(), str(directory), s) for s in todo]
        try:
            for fut in as_completed(futures):
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _one_thread_per_worker() -> None:
    """Process-pool initializer: one numba thread per worker process (the pool already fills the cores).

    Results do not depend on the thread count (docs/performance.md, "Determinism"); this only avoids
    workers × threads > cores, whose idle spinning cost ≈ 10 % system time in a 2-worker K = 7 run.
    """
    import numba

    numba.set_num_threads(1)


def _sample_task(config_toml: str, directory: str, sample: int) -> int:
    """Process-pool task: build one sample and save it (returns the sample index)."""
    from ..config import load_config

    cfg = load_config(config_toml)
    save_sample(directory, cfg, sample, run_sample(cfg, sample))
    return sample


def shard_samples(n_samples: int, shard: int, n_shards: int) -> list:
    """The samples of shard ``shard`` of ``n_shards``: a contiguous block, sizes differing by at most one."""
    lo = shard * n_samples // n_shards
    hi = (shard + 1) * n_samples // n_shards
    return list(range(lo, hi))
