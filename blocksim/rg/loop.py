"""Real-space coarse-graining (RG) of a pool of blocks (BRIEF §1.5, §1b; Eq. 3.8, 4.1, 4.2 of [ZL]).

Step k (k = 0 … K−1) holds a pool of blocks of linear size L_k = N0^k (units of L_1). It builds
P_out super blocks; super block j takes N0³ members from the pool (``members[j]``), rotates member i
by ``rotations[j, i]`` (T → R T Rᵀ), places it on lattice site i of an N0³ cube (spacing 1) and
couples the members with g_k = g / N0^(3k) (DESIGN note 3). Each super block is solved
(:func:`blocksim.spectra.solve`), its response is accumulated, and it is truncated to its lowest
``n_keep`` levels with the matrix elements of the total stress in that basis
(:meth:`blocksim.spectra.Spectrum.truncate`; one step is :func:`blocksim.rg.step.compute_step`). The P_out truncated super blocks, in order, are the pool of step k+1
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

* Im χ and Re χ on a log ω grid (:func:`blocksim.rg.observables.frequency_grid`; ``"auto"`` follows each step's spectrum),
  powder-averaged (the isotropic projection of the Mandel tensor, which equals the exact
  orientation average, :func:`blocksim.model.tensors.powder_lt`) and along the configured directions.
* MB reference: ``W_ab = ∫_band Im χ_ab(T_ref, ω) dω`` with sharp lines, i.e.
  ``W_ab = −π Σ_k p_k(T_ref)(1 − e^{−ω_k/T_ref}) amp_ka amp_kb`` over the transitions with ω_k in the
  band, per super block. ``mb_ratio = sqrt(Σ_j W_l^j / Σ_j W_t^j)`` and its standard error is the
  delete-one jackknife over the super blocks j (:func:`blocksim.rg.observables.jackknife_ratio`). The same reference for
  the uncoupled pool blocks entering the step is ``mb_ratio_pool``.

Randomness: every stream is ``SeedSequence(seed, spawn_key=run.spawn_key + (stream, ...))`` with
stream 0 = initial pool, (1, k) = members of step k, (2, k, j) = rotations of super block j of step
k (:mod:`blocksim.rg.pool`). Nothing depends on call order or thread count, so ``--resume``
reproduces an uninterrupted run bit for bit (:mod:`blocksim.rg.control`).

The run itself (:func:`run`) is a list of phases: the output path, the initial state (fresh or
resumed), the steps (each appended to the file through :mod:`blocksim.io`), the final pool.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import io as bio
from .._malloc import keep_freed_memory
from .._threads import single_blas
from .._version import __version__
from ..config import Config, load_config
from ..errors import InputError
from ..outputlock import OutputLock
from .control import (
    Progress,
    RunInterrupted,
    SignalGuard,
    check_output_path,
    load_partial,
    mark_failed,
    resume_mismatch,
    set_threads,
)
from .pool import initial_pool
from . import tree
from .step import compute_step

__all__ = ["run"]

log = logging.getLogger("blocksim.rg")


@dataclass
class _State:
    """Where the run stands: the next step and the pool that enters it."""

    start: int = 0
    pool_e: np.ndarray | None = None
    pool_t: np.ndarray | None = None
    lineage: np.ndarray | None = None
    members_history: list = field(default_factory=list)
    samples_dir: Path | None = None


def run(config, output=None, *, resume: bool = False, force: bool = False, progress=None, overrides=(),
        workers: int = 1, shard: tuple | None = None, client=None) -> Path:
    """Run a coarse-graining trajectory and return the path of its HDF5 file.

    Parameters
    ----------
    config : Config, path, TOML text or dict
        The run config (``overrides`` as in :func:`blocksim.config.load_config`).
    output : path-like, optional
        The .h5 path (default ``run.output`` or ``out/<config stem>.h5``). The run writes
        ``OUT.part`` (status "running", one atomic append per complete step) and renames it to
        ``OUT`` when done.
    resume : bool
        Continue ``OUT.part`` from its last complete step (the config must match; a seed left unset
        is taken from the file); reproduces an uninterrupted run bit for bit.
    force : bool
        Replace an existing ``OUT`` (only by the final rename) or discard a stale ``OUT.part``;
        without it either raises :class:`InputError`.
    progress : None, "auto", "bar", "log", "none" or callable
        None/"auto": a tqdm bar on a terminal, else one stderr line per step; a callable receives a
        dict per step.

    workers : int
        ``rg.pool_strategy = "tree"``: build the samples on this many spawned processes (the file does
        not depend on it).
    client : distributed.Client, optional
        ``"tree"``: build the samples on this dask client's workers instead (same file).
    shard : (int, int), optional
        ``"tree"`` only: ``(i, n)`` builds only the samples of shard i of n
        (:func:`~blocksim.rg.tree.shard_samples`) into ``OUT.h5.samples/`` and returns that directory
        without writing the trajectory (a SLURM array task); a later run without ``shard`` merges them.
        Needs ``run.seed``.

    Returns
    -------
    Path
        The complete trajectory file. SIGTERM marks the partial file "failed" and raises
        :class:`~blocksim.rg.control.RunInterrupted`.

    Notes
    -----
    Before any work the output is checked (not a directory, writable parent) and locked
    (:class:`blocksim.outputlock.OutputLock`, ``OUT.lock`` with pid and host): a second run on the
    same output is refused and names the first.
    """
    cfg = config if isinstance(config, Config) and not overrides else load_config(config, overrides)
    if shard is not None:  # a SLURM array task: no output lock, several shards share OUT.h5.samples/
        return _run_shard(cfg, output, shard, workers)
    out = Path(output) if output is not None else cfg.output_path()
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"output = {str(out)!r}: must end in .h5 or .hdf5")
    check_output_path(out)
    lock = OutputLock(out)
    lock.check()  # a running writer is named before anything else is said about its files
    if _already_complete(cfg, out, resume=resume, force=force):
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"output = {str(out)!r}: cannot create its directory ({exc.strerror or exc})") from None
    with lock:
        return _run_locked(cfg, out, resume, progress, workers, client)


def _run_locked(cfg: Config, out: Path, resume: bool, progress, workers: int = 1, client=None) -> Path:
    """The run proper, while this process holds the output lock: state, steps, final pool."""
    part = bio.part_path(out)
    cfg, state = _initial_state(cfg, part, resume)
    set_threads(cfg)
    sizes = cfg.pool_sizes()
    prog = Progress(cfg.run.progress if progress is None else progress, sum(sizes[1:]),
                    sum(sizes[1 : state.start + 1]), cfg.n_steps)
    try:
        with SignalGuard() as guard:
            try:
                if cfg.rg.pool_strategy == "tree":
                    _run_tree(cfg, part, out, state, guard, prog, workers, client)
                else:
                    _run_steps(cfg, part, state, guard, prog)
                with guard.writing():
                    _finish(part, state)
                    os.replace(part, out)
                if state.samples_dir is not None:
                    shutil.rmtree(state.samples_dir, ignore_errors=True)
            except RunInterrupted as exc:
                exc.path = part
                mark_failed(part, str(exc))
                raise
            except KeyboardInterrupt:
                mark_failed(part, "interrupted by SIGINT")
                raise
            except Exception as exc:
                mark_failed(part, f"{type(exc).__name__}: {exc}")
                raise
    finally:
        prog.close()
    return out


# --------------------------------------------------------------------------------------------
# The phases of run()
# --------------------------------------------------------------------------------------------
def _already_complete(cfg: Config, out: Path, *, resume: bool, force: bool) -> bool:
    """Checks of an existing output or partial file; True if ``resume`` finds the run complete."""
    part = bio.part_path(out)
    if out.exists() and not (force or resume):
        raise InputError(f"output = {str(out)!r}: exists; use --force to replace it or --resume to continue")
    if part.exists() and not (force or resume):
        raise InputError(f"output = {str(out)!r}: a partial file {str(part)!r} from an earlier run exists; "
                         "use --resume to continue it or --force to discard it")
    if resume and not part.exists() and out.exists() and not force:
        with bio.open_trajectory(out) as tr:
            mismatch = resume_mismatch(tr.run_config, cfg)
            if tr.status == "complete" and mismatch is None:
                log.info("%s is already complete", out)
                return True
        raise InputError(f"output = {str(out)!r}: exists and cannot be resumed ({mismatch or 'not complete'}); "
                         "use --force to replace it")
    return False


def _initial_state(cfg: Config, part: Path, resume: bool) -> tuple[Config, _State]:
    """The resolved config and the state to start from (a partial file's, or a fresh seed)."""
    if resume and part.exists():
        cfg, start, pool_e, pool_t, lineage, history = load_partial(part, cfg)
        return cfg, _State(start, pool_e, pool_t, lineage, history)
    if resume:
        log.info("no partial file %s: starting a new run", part)
    seed = cfg.run.seed if cfg.run.seed is not None else int(np.random.SeedSequence().entropy % (1 << 63))
    return load_config(cfg, {"run.seed": seed}), _State()


def _root_attrs(cfg: Config) -> dict:
    """Root attributes of a new trajectory (provenance, the resolved config, the seeds)."""
    return {
        "blocksim_version": __version__,
        "git_commit": bio.git_commit(),
        "created": bio.now(),
        "config_toml": cfg.to_toml(),
        "seed_entropy": int(cfg.run.seed),
        "spawn_key": list(cfg.run.spawn_key),
        "n_steps": cfg.n_steps,
    }


def _run_steps(cfg: Config, part: Path, state: _State, guard: SignalGuard, prog: Progress) -> None:
    """Create the file (fresh runs), then compute and append steps ``state.start … K−1``."""
    if state.start == 0 and state.pool_e is None:
        with guard.writing():
            bio.create_file(part, _root_attrs(cfg), cfg.to_dict())
        state.pool_e, state.pool_t = initial_pool(cfg)
        state.lineage = np.arange(state.pool_e.shape[0], dtype=np.int64)
    keep_freed_memory()
    for k in range(state.start, cfg.n_steps):
        t0 = time.perf_counter()
        with single_blas():
            res = compute_step(cfg, k, state.pool_e, state.pool_t, state.lineage, state.members_history,
                               tick=prog.tick)
        elapsed = time.perf_counter() - t0
        with guard.writing():
            bio.append_step(part, k, res.values, res.diagnostics, {"elapsed_s": elapsed, "finished": bio.now()})
        prog.step_done(k, bio.Step(index=k, diagnostics=res.diagnostics, **res.values), elapsed)
        state.members_history.append(res.values["members"])
        state.pool_e, state.pool_t, state.lineage = res.pool_energies, res.pool_stress, res.lineage


def _run_shard(cfg: Config, output, shard, workers: int) -> Path:
    """Build the samples of one shard of a tree run into ``OUT.h5.samples/``; return that directory."""
    i, n = (int(x) for x in shard)
    if cfg.rg.pool_strategy != "tree":
        raise InputError(f"rg.pool_strategy = {cfg.rg.pool_strategy!r}: --tree-shard needs 'tree'")
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"--tree-shard = {i}/{n}: must be I/N with 0 ≤ I < N")
    if cfg.run.seed is None:
        raise InputError("run.seed: must be set for --tree-shard (every shard must draw from the same streams)")
    out = Path(output) if output is not None else cfg.output_path()
    set_threads(cfg)
    directory = tree.samples_dir(out)
    tree.compute_samples(cfg, directory, tree.shard_samples(cfg.rg.samples, i, n), workers=workers,
                         log=log.info)
    return directory


def _run_tree(cfg: Config, part: Path, out: Path, state: _State, guard: SignalGuard, prog: Progress,
              workers: int, client=None) -> None:
    """Tree strategy: build (or reuse) every sample, then merge them into the steps of the file."""
    if state.start == 0 and state.pool_e is None:
        with guard.writing():
            bio.create_file(part, dict(_root_attrs(cfg), tree_stored_subset=tree.STORED_SUBSET), cfg.to_dict())
    directory = tree.samples_dir(out)
    tree.compute_samples(cfg, directory, range(cfg.rg.samples), workers=workers, client=client, tick=prog.tick,
                         log=log.info)
    samples = [tree.load_sample(directory, cfg, s) for s in range(cfg.rg.samples)]
    steps, final_e, final_t = tree.merge_samples(cfg, samples)
    for k, (values, diagnostics) in enumerate(steps):
        if k < state.start:
            continue
        with guard.writing():
            bio.append_step(part, k, values, diagnostics, {"finished": bio.now()})
        prog.step_done(k, bio.Step(index=k, diagnostics=diagnostics, **values), 0.0)
    state.pool_e, state.pool_t = final_e, final_t
    state.lineage = np.arange(final_e.shape[0], dtype=np.int64)
    state.samples_dir = directory


def _finish(part: Path, state: _State) -> None:
    """Write /final_pool and mark the file complete."""
    bio.update_file(
        part,
        attrs={"status": "complete", "finished": bio.now()},
        final_pool={"energies": state.pool_e, "stress": state.pool_t, "lineage": state.lineage},
    )
