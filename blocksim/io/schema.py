"""The trajectory file schema (BRIEF §4): one table per group, one row per dataset.

Every dataset a trajectory holds is one :class:`Dataset` row here: its name (the key the RG layer
hands over, and the :class:`~blocksim.io.Step` field for step datasets), its path inside the group,
dtype, shape, units, description and accuracy. The writer (:mod:`blocksim.io.trajectory`) takes
the units and descriptions from these rows and refuses names it does not know; the reader's
:class:`~blocksim.io.Step` dataclass is generated from :data:`STEP`; the tables of
``docs/trajectory-format.md`` are :func:`markdown` (a test checks that they are current).
A new dataset is one new row.

Accuracy column: what each dataset is accurate to, in the coupling g_k of its step, for
``solver.method = "perturbative"`` (first-order theory, Eq. 3.2 of [ZL]); with ``"exact"`` every
solver output is exact, with ``"sector"`` exact within the sector of ≤ 1 (or ≤ 2 with
``include_doubles``) excited members. "First order" means an error O(g²). A summary column is as
accurate as the step dataset it copies.

Units: energies, ω, T in E*; stresses in T*; lengths in L_1; χ in T*²/E* per super-block volume;
band weights ∫Im χ dω in T*².
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Dataset",
    "Attribute",
    "STEP",
    "DIAGNOSTICS",
    "SUMMARY",
    "FINAL_POOL",
    "ROOT_ATTRIBUTES",
    "STREAM_KEYS",
    "by_name",
    "summary_row",
    "markdown",
]


@dataclass(frozen=True)
class Dataset:
    """One dataset of the trajectory file.

    Parameters
    ----------
    name : str
        Key under which the RG layer hands the array to the writer (the :class:`~blocksim.io.Step`
        field for step datasets, the diagnostic name, the summary column).
    path : str
        Path inside its group (``/steps/step_K/``, ``diagnostics/``, ``/summary/``, ``/final_pool/``).
    dtype : str
        Stored element type: ``"float64"``, ``"int64"``, ``"bool"`` (stored as uint8) or ``"str"``.
    shape : str
        Shape in words, ``"()"`` for a scalar.
    units : str
        The ``units`` attribute (``"1"`` for dimensionless).
    description : str
        The ``description`` attribute.
    accuracy : str
        What the values are accurate to (see the module docstring): "exact (…)", "first order in g …",
        "statistical (…)"; summary columns get "as <source>".
    required : bool
        Part of the BRIEF §4 contract: the reader refuses a step without it.
    source : str
        Summary rows only: the step field (``"mb_ratio"``), diagnostic (``"diagnostics/level_scale"``)
        or reduction (``"mean:weight_l"``) the column is taken from.
    """

    name: str
    path: str
    dtype: str
    shape: str
    units: str
    description: str
    accuracy: str = ""
    required: bool = False
    source: str = ""


@dataclass(frozen=True)
class Attribute:
    """One root attribute of the trajectory file: name, dtype and meaning."""

    name: str
    dtype: str
    description: str


_F, _I, _B, _S = "float64", "int64", "bool", "str"
_PER_SB = "[P_out]"

#: Accuracy statements (for ``solver.method = "perturbative"``; see the module docstring).
_A_DEFINITION = "exact (a definition of the step)"
_A_DRAW = "exact (the stored random draws)"
_A_POOL = "step 0: exact (bare blocks); step K ≥ 1: as superblocks/* of step K−1"
_A_ENERGIES = "first order in g (ground shift and every excitation energy, Eq. 3.2)"
_A_STRESS = ("first order in g: ⟨α|T|0⟩ and ⟨0|T|0⟩ (with the pair admixture of the ground state) and the "
             "excited–excited block ⟨α|T|β⟩ (blocksim.spectra.excited: diagonal and off-diagonal, same and "
             "different members); elements with a double excitation inside a single–double resonant cluster: "
             "zeroth order")
_A_IM = ("transitions from the ground state: strengths first order in g; thermally excited initial states: "
         "independent-excitation populations (exact at g = 0, first order as T → 0) with the members' own "
         "excited→excited lines at zeroth order (DESIGN note 2)")
_A_RE = ("as im_chi_* (same spectral sum; for line = 'bins' the Hilbert transform of the binned line at the bin "
         "centres)")
_A_POOL_MB = "exact for the stored pool (uncoupled blocks)"
_A_ERR = ("statistical (delete-one jackknife over independent units: partition super blocks, resample replicate "
          "pools, tree subtrees); NaN when n_effective < rg.min_effective_samples")
_A_ERR_POOL = ("statistical (delete-one jackknife over independent units of the pool); NaN when they are fewer than "
               "rg.min_effective_samples")
_A_DIAG = "exact counts and sums of the quantities of the step"
_A_FINAL = "as superblocks/* of the last step"

#: Datasets of ``/steps/step_K/`` (fields of :class:`blocksim.io.Step`, in order).
STEP = (
    Dataset("scale_L", "scale_L", _F, "()", "L_1", "linear size L_k = N0^k of the pool blocks that enter this step", accuracy=_A_DEFINITION,
            required=True),
    Dataset("scale_L_out", "scale_L_out", _F, "()", "L_1",
            "linear size N0·L_k of the super blocks built in this step (the scale of the response arrays)", accuracy=_A_DEFINITION),
    Dataset("coupling_g", "coupling_g", _F, "()", "1",
            "coupling g_k = g/N0^(3k) of this step (lattice spacing 1, DESIGN note 3)", accuracy=_A_DEFINITION, required=True),
    Dataset("omega", "omega", _F, "[n_ω]", "E*",
            "frequency grid [n_ω], log-spaced (geometric bin centres for line='bins')", accuracy=_A_DEFINITION, required=True),
    Dataset("omega_edges", "omega_edges", _F, "[n_ω + 1]", "E*",
            "log-spaced bin edges of the grid [n_ω + 1]; omega = sqrt(e_j e_{j+1})", accuracy=_A_DEFINITION),
    Dataset("temperature", "temperature", _F, "[n_T]", "E*", "temperature grid [n_T] (k_B = 1)", accuracy=_A_DEFINITION, required=True),
    Dataset("im_chi_l", "im_chi_l", _F, "[n_T, n_ω]", "T*^2/E*",
            "powder-averaged Im χ_l(T, ω) [n_T, n_ω] of this step's super blocks, mean per super block "
            "(V = one super block); negative for ω > 0 (Eq. 2.11)", accuracy=_A_IM, required=True),
    Dataset("im_chi_t", "im_chi_t", _F, "[n_T, n_ω]", "T*^2/E*",
            "powder-averaged Im χ_t(T, ω) [n_T, n_ω], as im_chi_l", accuracy=_A_IM, required=True),
    Dataset("re_chi_l", "re_chi_l", _F, "[n_T, n_ω]", "T*^2/E*",
            "powder-averaged Re χ_l(T, ω) [n_T, n_ω] from the spectral sum", accuracy=_A_RE, required=True),
    Dataset("re_chi_t", "re_chi_t", _F, "[n_T, n_ω]", "T*^2/E*",
            "powder-averaged Re χ_t(T, ω) [n_T, n_ω] from the spectral sum", accuracy=_A_RE, required=True),
    Dataset("mb_ratio", "mb_ratio", _F, "()", "1",
            "MB_num = sqrt(W_l/W_t), W = ∫_band Im χ dω at the reference temperature, powder average, "
            "super blocks of this step (scale_L_out)", accuracy=_A_IM, required=True),
    Dataset("mb_ratio_err", "mb_ratio_err", _F, "()", "1",
            "jackknife standard error of mb_ratio over the super blocks", accuracy=_A_ERR, required=True),
    Dataset("n_effective", "n_effective", _I, "()", "1",
            "independent samples behind the step's errors (see rg.min_effective_samples)", accuracy=_A_DEFINITION),
    Dataset("reliable", "reliable", _B, "()", "1",
            "1 if n_effective ≥ rg.min_effective_samples, else 0 and every error of the step is NaN",
            accuracy=_A_DEFINITION),
    Dataset("mb_ratio_pool", "mb_ratio_pool", _F, "()", "1",
            "the same MB reference for the pool blocks entering this step (scale_L), uncoupled", accuracy=_A_POOL_MB),
    Dataset("mb_ratio_pool_err", "mb_ratio_pool_err", _F, "()", "1",
            "jackknife standard error of mb_ratio_pool over the pool", accuracy=_A_ERR_POOL),
    Dataset("directions", "directional/directions", _S, "[n_dir]", "1",
            "propagation directions 'q' or 'q:p' (Miller indices; p = transverse polarization)", accuracy=_A_DEFINITION),
    Dataset("im_chi_l_dir", "directional/im_chi_l", _F, "[n_dir, n_T, n_ω]", "T*^2/E*",
            "Im χ_l along each direction [n_dir, n_T, n_ω]", accuracy=_A_IM),
    Dataset("im_chi_t_dir", "directional/im_chi_t", _F, "[n_dir, n_T, n_ω]", "T*^2/E*",
            "Im χ_t along each direction [n_dir, n_T, n_ω]", accuracy=_A_IM),
    Dataset("re_chi_l_dir", "directional/re_chi_l", _F, "[n_dir, n_T, n_ω]", "T*^2/E*",
            "Re χ_l along each direction [n_dir, n_T, n_ω]", accuracy=_A_RE),
    Dataset("re_chi_t_dir", "directional/re_chi_t", _F, "[n_dir, n_T, n_ω]", "T*^2/E*",
            "Re χ_t along each direction [n_dir, n_T, n_ω]", accuracy=_A_RE),
    Dataset("mb_ratio_dir", "directional/mb_ratio", _F, "[n_dir]", "1", "MB reference along each direction [n_dir]", accuracy=_A_IM),
    Dataset("mb_ratio_dir_err", "directional/mb_ratio_err", _F, "[n_dir]", "1",
            "jackknife standard error of directional mb_ratio", accuracy=_A_ERR),
    Dataset("reference_temperature", "reference/temperature", _F, "()", "E*", "temperature of the MB reference", accuracy=_A_DEFINITION),
    Dataset("reference_band", "reference/band", _F, "[2]", "E*", "[ω_lo, ω_hi] band of the MB reference", accuracy=_A_DEFINITION),
    Dataset("weight_tensor", "reference/weight_tensor", _F, "[P_out, 6, 6]", "T*^2",
            "per super block W_ab = ∫_band Im χ_ab dω at the reference temperature, sharp lines [P_out, 6, 6] "
            "(Mandel); 'tree': per jackknife unit (subtree), mean per super block [n_effective, 6, 6]", accuracy=_A_IM),
    Dataset("weight_l", "reference/weight_l", _F, _PER_SB, "T*^2",
            "per super block powder W_l [P_out] ('tree': per jackknife unit, as weight_tensor)", accuracy=_A_IM),
    Dataset("weight_t", "reference/weight_t", _F, _PER_SB, "T*^2",
            "per super block powder W_t [P_out] ('tree': per jackknife unit, as weight_tensor)", accuracy=_A_IM),
    Dataset("weight_pool_l", "reference/weight_pool_l", _F, _PER_SB, "T*^2",
            "per super block Σ over its members of their uncoupled powder W_l, same band and temperature [P_out] "
            "('tree': per jackknife unit, mean per super block, as weight_l); weight_l − weight_pool_l is the "
            "interaction's increment of the step (Eq. 4.1)", accuracy=_A_POOL_MB),
    Dataset("weight_pool_t", "reference/weight_pool_t", _F, _PER_SB, "T*^2",
            "as weight_pool_l for W_t [P_out]", accuracy=_A_POOL_MB),
    Dataset("pool_energies", "pool/energies", _F, "[P_k, n_k]", "E*",
            "levels of the pool blocks entering this step [P_k, n_k], ground 0", accuracy=_A_POOL, required=True),
    Dataset("pool_stress", "pool/stress", _F, "[P_k, 6, n_k, n_k]", "T*",
            "Mandel stress matrices of the pool blocks in their energy eigenbasis [P_k, 6, n_k, n_k]", accuracy=_A_POOL, required=True),
    Dataset("members", "superblocks/members", _I, "[P_out, N0³]", "1",
            "pool indices of the members of each super block [P_out, N0³], member i at lattice site i of "
            "blocksim.coupling.lattice_positions (C order)", accuracy=_A_DRAW, required=True),
    Dataset("rotations", "superblocks/rotations", _F, "[P_out, N0³, 3, 3]", "1",
            "rotation R applied to each member, T → R T Rᵀ [P_out, N0³, 3, 3]", accuracy=_A_DRAW, required=True),
    Dataset("superblock_energies", "superblocks/energies", _F, "[P_out, n_keep]", "E*",
            "levels of the truncated super blocks [P_out, n_keep] (= pool of step K+1, same order)", accuracy=_A_ENERGIES),
    Dataset("superblock_stress", "superblocks/stress", _F, "[P_out, 6, n_keep, n_keep]", "T*",
            "total stress Σ_s T^(s) of the truncated super blocks in their eigenbasis [P_out, 6, n_keep, n_keep]", accuracy=_A_STRESS),
)


def _solver_diag(name: str, dtype: str, units: str = "1") -> Dataset:
    return Dataset(name, name, dtype, _PER_SB, units,
                   f"per super block: solver diagnostic '{name}' (blocksim.spectra.solve)", accuracy=_A_DIAG)


#: Datasets of ``/steps/step_K/diagnostics/`` (arrays per super block have length P_out).
DIAGNOSTICS = (
    Dataset("weight_kept", "weight_kept", _F, _PER_SB, "1",
            "per super block: ground-state spectral weight Σ_{0<α<n_keep}|⟨α|T|0⟩|² kept by the truncation over "
            "the sum rule Σ_{α>0}|⟨α|T|0⟩|² of the computed states", accuracy=_A_DIAG),
    Dataset("weight_kept_mean", "weight_kept_mean", _F, "()", "1", "mean of weight_kept over the super blocks", accuracy=_A_DIAG),
    Dataset("weight_kept_min", "weight_kept_min", _F, "()", "1", "minimum of weight_kept over the super blocks", accuracy=_A_DIAG),
    Dataset("lowest_excluded_energy", "lowest_excluded_energy", _F, _PER_SB, "E*",
            "per super block: energy of the lowest state not kept (nan if all computed states are kept)", accuracy=_A_DIAG),
    Dataset("double_in_window", "double_in_window", _B, _PER_SB, "1",
            "per super block: 1 if the lowest double excitation lies below the highest kept level (the kept "
            "window is then incomplete unless doubles are included)", accuracy=_A_DIAG),
    Dataset("double_in_window_count", "double_in_window_count", _I, "()", "1",
            "number of super blocks with double_in_window", accuracy=_A_DIAG),
    Dataset("ground_reordered", "ground_reordered", _B, _PER_SB, "1",
            "per super block: 1 if a computed excitation energy was < 0 (the solver's ground state was not the "
            "lowest state); the truncated levels were re-sorted and shifted so that the lowest kept level is the "
            "new ground state", accuracy=_A_DIAG),
    Dataset("ground_reordered_count", "ground_reordered_count", _I, "()", "1",
            "number of super blocks with ground_reordered", accuracy=_A_DIAG),
    _solver_diag("dimension", _F),
    _solver_diag("ground_shift", _F, "E*"),
    _solver_diag("max_cluster_size", _F),
    _solver_diag("n_dressed_members", _F),
    _solver_diag("n_resonant_clusters", _F),
    _solver_diag("n_resonant_pairs", _F),
    _solver_diag("n_resonant_single_double", _F),
    _solver_diag("n_states", _F),
    _solver_diag("resonant_fraction", _F),
    Dataset("n_resonant_pairs_total", "n_resonant_pairs_total", _I, "()", "1",
            "resonant single–single pairs summed over the super blocks of the step", accuracy=_A_DIAG),
    Dataset("n_resonant_single_double_total", "n_resonant_single_double_total", _I, "()", "1",
            "resonant single–double pairs |t,p⟩ ↔ |t,q; s,m⟩ summed over the super blocks of the step", accuracy=_A_DIAG),
    Dataset("n_resonance_warnings", "n_resonance_warnings", _I, "()", "1",
            "super blocks for which the solver raised a ResonanceWarning (most excitations resonant)", accuracy=_A_DIAG),
    Dataset("pool_ground_weight_tensor", "pool_ground_weight_tensor", _F, "[6, 6]", "T*^2",
            "pool-averaged ground-state spectral-weight tensor Σ_{m>0}⟨0|T_a|m⟩⟨m|T_b|0⟩ [6, 6] (Mandel)", accuracy=_A_DIAG),
    Dataset("isotropy_residual", "isotropy_residual", _F, "()", "1",
            "‖S − S_iso‖/‖S‖ of pool_ground_weight_tensor (tensors.isotropic_projection); 0 = isotropic", accuracy=_A_DIAG),
    Dataset("level_scale", "level_scale", _F, "()", "E*", "median lowest gap E_1 of the pool blocks", accuracy=_A_DIAG),
    Dataset("pool_gap_mean", "pool_gap_mean", _F, "()", "E*", "mean lowest gap E_1 of the pool blocks", accuracy=_A_DIAG),
    Dataset("pool_top_level_mean", "pool_top_level_mean", _F, "()", "E*", "mean highest level of the pool blocks", accuracy=_A_DIAG),
    Dataset("pool_size", "pool_size", _I, "()", "1", "number of blocks in the pool entering the step", accuracy=_A_DIAG),
    Dataset("pool_distinct_ancestors", "pool_distinct_ancestors", _I, "()", "1",
            "distinct initial-pool blocks that are ancestors of the pool", accuracy=_A_DIAG),
    Dataset("pool_distinct_lineages", "pool_distinct_lineages", _I, "()", "1",
            "distinct initial blocks carrying the pool blocks' lowest excitations (lineage through the dominant "
            "member of each first excited state)", accuracy=_A_DIAG),
    Dataset("pool_collapsed", "pool_collapsed", _B, "()", "1",
            "1 if pool_distinct_lineages < rg.diversity_warn × pool_size", accuracy=_A_DIAG),
    Dataset("pool_lineage", "pool_lineage", _I, "[P_k]", "1",
            "initial-pool index carrying each pool block's lowest excitation [P_k]", accuracy=_A_DIAG),
    Dataset("lineage_out", "lineage_out", _I, _PER_SB, "1",
            "the same for the truncated super blocks [P_out] (next pool)", accuracy=_A_DIAG),
)

#: Columns of ``/summary/`` (one entry per complete step; ``source`` says where each comes from).
SUMMARY = (
    Dataset("step", "step", _I, "[K]", "1", "step index k", source="index"),
    Dataset("scale_L", "scale_L", _F, "[K]", "L_1", "scale L_k of the pool entering step k", source="scale_L"),
    Dataset("scale_L_out", "scale_L_out", _F, "[K]", "L_1",
            "scale N0·L_k of the super blocks of step k (scale of mb_ratio)", source="scale_L_out"),
    Dataset("coupling_g", "coupling_g", _F, "[K]", "1", "coupling g_k of step k", source="coupling_g"),
    Dataset("mb_ratio", "mb_ratio", _F, "[K]", "1", "powder MB reference of the super blocks of step k",
            source="mb_ratio"),
    Dataset("mb_ratio_err", "mb_ratio_err", _F, "[K]", "1", "jackknife standard error of mb_ratio",
            source="mb_ratio_err"),
    Dataset("mb_ratio_pool", "mb_ratio_pool", _F, "[K]", "1", "powder MB reference of the pool entering step k",
            source="mb_ratio_pool"),
    Dataset("mb_ratio_pool_err", "mb_ratio_pool_err", _F, "[K]", "1", "jackknife standard error of mb_ratio_pool", source="mb_ratio_pool_err"),
    Dataset("mb_ratio_dir", "mb_ratio_dir", _F, "[K, n_dir]", "1",
            "directional MB reference [K, n_dir] (directions: see directions)", source="mb_ratio_dir"),
    Dataset("mb_ratio_dir_err", "mb_ratio_dir_err", _F, "[K, n_dir]", "1",
            "jackknife standard error of mb_ratio_dir", source="mb_ratio_dir_err"),
    Dataset("im_chi_l_ref", "im_chi_l_ref", _F, "[K]", "T*^2",
            "∫_band Im χ_l dω at the reference temperature, mean per super block (powder)",
            source="mean:weight_l"),
    Dataset("im_chi_t_ref", "im_chi_t_ref", _F, "[K]", "T*^2",
            "∫_band Im χ_t dω at the reference temperature, mean per super block (powder)",
            source="mean:weight_t"),
    Dataset("weight_kept_mean", "weight_kept_mean", _F, "[K]", "1", "mean spectral weight kept by the truncation", source="diagnostics/weight_kept_mean"),
    Dataset("level_scale", "level_scale", _F, "[K]", "E*", "median lowest gap of the pool entering step k",
            source="diagnostics/level_scale"),
    Dataset("isotropy_residual", "isotropy_residual", _F, "[K]", "1",
            "isotropy residual of the pool's ground-state spectral-weight tensor",
            source="diagnostics/isotropy_residual"),
    Dataset("pool_size", "pool_size", _I, "[K]", "1", "pool size entering step k", source="diagnostics/pool_size"),
    Dataset("pool_distinct_ancestors", "pool_distinct_ancestors", _I, "[K]", "1",
            "distinct initial ancestors of the pool entering step k", source="diagnostics/pool_distinct_ancestors"),
    Dataset("pool_distinct_lineages", "pool_distinct_lineages", _I, "[K]", "1",
            "distinct lowest-gap lineages of the pool entering step k", source="diagnostics/pool_distinct_lineages"),
    Dataset("double_in_window_count", "double_in_window_count", _I, "[K]", "1",
            "super blocks with a double excitation inside the kept window",
            source="diagnostics/double_in_window_count"),
    Dataset("n_effective", "n_effective", _I, "[K]", "1", "independent samples behind the errors of step k",
            source="n_effective"),
    Dataset("reliable", "reliable", _B, "[K]", "1",
            "1 if step k has ≥ rg.min_effective_samples independent samples; 0: its errors are NaN",
            source="reliable"),
    Dataset("directions", "directions", _S, "[n_dir]", "1", "directions of mb_ratio_dir", source="directions"),
)

SUMMARY = tuple(d if d.accuracy else dataclasses.replace(d, accuracy=f"as {d.source}") for d in SUMMARY)

#: Datasets of ``/final_pool/`` (written when the run completes).
FINAL_POOL = (
    Dataset("energies", "energies", _F, "[P, n_keep]", "E*",
            "levels of the truncated super blocks of the last step (the pool at scale N0^K)", accuracy=_A_FINAL),
    Dataset("stress", "stress", _F, "[P, 6, n_keep, n_keep]", "T*",
            "their Mandel stress matrices [P, 6, n_keep, n_keep]", accuracy=_A_FINAL),
    Dataset("lineage", "lineage", _I, "[P]", "1", "lowest-gap lineage of the final pool", accuracy=_A_FINAL),
)

#: The value of the root attribute ``stream_keys`` (the random streams of :mod:`blocksim.rg`).
STREAM_KEYS = ("initial pool (0,); members of step k (1, k); rotations of super block j of step k (2, k, j); "
               "tree: bare blocks and internal rotations of the chunk root at path p of sample s (3, s, *p), "
               "rotations of the super block at path p of sample s above the chunk level (4, s, *p); "
               "each prefixed by spawn_key")

#: Root attributes.
ROOT_ATTRIBUTES = (
    Attribute("format", _S, '`"blocksim-trajectory"`'),
    Attribute("format_version", _I, "1"),
    Attribute("blocksim_version", _S, "provenance: the package version"),
    Attribute("git_commit", _S, 'provenance: commit of the source tree (`"unknown"` outside a git checkout)'),
    Attribute("created", _S, "UTC ISO timestamp of the start of the run"),
    Attribute("finished", _S, "UTC ISO timestamp of the end (or failure) of the run"),
    Attribute("config_toml", _S, "the full resolved config (defaults filled in, seed resolved)"),
    Attribute("seed_entropy", _I, "the SeedSequence entropy"),
    Attribute("spawn_key", _I, "base spawn key (int array, may be empty)"),
    Attribute("stream_keys", _S, "text description of the random stream keys (STREAM_KEYS)"),
    Attribute("n_steps", _I, "number of coarse-graining steps K"),
    Attribute("tree_stored_subset", _S, "rg.pool_strategy = 'tree' only: which super blocks' members, rotations "
                                        "and levels the steps store (blocksim.rg.tree.STORED_SUBSET)"),
    Attribute("status", _S, '`"running"` \\| `"complete"` \\| `"failed"`'),
    Attribute("failure_reason", _S, 'why a run failed (`"interrupted by SIGTERM"`, exception text); `""` after a '
                                    "resume"),
    Attribute("resumed", _S, "timestamps of resumes (absent if never resumed)"),
)


def by_name(table) -> dict:
    """``{name: Dataset}`` of one of the tables above."""
    return {d.name: d for d in table}


def summary_row(step) -> dict:
    """The :data:`SUMMARY` columns of one :class:`~blocksim.io.Step` (``directions`` excluded)."""
    row = {}
    for d in SUMMARY:
        if d.name == "directions":
            continue
        src = d.source
        if src.startswith("diagnostics/"):
            row[d.name] = step.diagnostics[src[len("diagnostics/"):]]
        elif src.startswith("mean:"):
            row[d.name] = float(np.mean(getattr(step, src[len("mean:"):])))
        elif d.dtype == _F and d.shape != "[K]":
            row[d.name] = np.asarray(getattr(step, src))
        else:
            row[d.name] = getattr(step, src)
    return row


def _table(rows, first: str) -> str:
    out = [f"| {first} | dtype | shape | units | accuracy | description |", "|---|---|---|---|---|---|"]
    for d in rows:
        name = f"`{d.name}`" if d.name == d.path else f"`{d.name}` (`{d.path}`)"
        if d.required:
            name += " *"
        desc = d.description.replace("|", "\\|")
        acc = d.accuracy.replace("|", "\\|")
        out.append(f"| {name} | {d.dtype} | {d.shape} | {d.units} | {acc} | {desc} |")
    return "\n".join(out)


def markdown() -> str:
    """The dataset tables of ``docs/trajectory-format.md`` (generated from this module)."""
    parts = [
        "### Root attributes\n",
        "| attribute | dtype | meaning |\n|---|---|---|\n"
        + "\n".join(f"| `{a.name}` | {a.dtype} | {a.description} |" for a in ROOT_ATTRIBUTES),
        "\n### Step datasets `/steps/step_K/` (fields of `blocksim.io.Step`; * = required by BRIEF §4)\n",
        _table(STEP, "Step field (path)"),
        "\n### Diagnostics `/steps/step_K/diagnostics/`\n",
        _table(DIAGNOSTICS, "name"),
        "\n### Summary `/summary/` (one entry per complete step)\n",
        _table(SUMMARY, "name"),
        "\n### Final pool `/final_pool/`\n",
        _table(FINAL_POOL, "name"),
    ]
    return "\n".join(parts) + "\n"
