"""Run control of the coarse-graining loop: signals, progress, threads and resume (BRIEF §4).

Kept beside the loop (:mod:`blocksim.rg.loop`) so that the loop reads as a list of phases:
:class:`SignalGuard` turns SIGTERM into :class:`RunInterrupted` (deferred while a file write is in
progress), :class:`Progress` reports steps, :func:`load_partial` reads back the state of a partial
file for ``--resume``, :func:`mark_failed` records why a run stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import io as bio
from ..config import Config, load_config
from ..errors import InputError

__all__ = ["RunInterrupted", "SignalGuard", "Progress", "check_output_path", "resume_mismatch", "load_partial",
           "set_threads", "mark_failed"]

log = logging.getLogger("blocksim.rg")


class RunInterrupted(Exception):
    """The run was stopped by a signal (SIGTERM/SIGINT); the partial file is marked "failed"."""

    def __init__(self, signum: int, path: Path | None = None):
        self.signum = int(signum)
        self.path = path
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


class SignalGuard:
    """Context manager: SIGTERM raises :class:`RunInterrupted`, deferred while inside :meth:`writing`."""

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
        """A file write that a SIGTERM must not cut: the signal is raised after it."""
        self.in_write = True
        try:
            yield
        finally:
            self.in_write = False
        if self.pending is not None:
            raise RunInterrupted(self.pending)


class Progress:
    """Progress of a run: a tqdm bar on a terminal, else one log line per step on stderr, or a user callback.

    ``mode``: None/"auto"/True, "bar", "log", "none" or a callable receiving a dict per step;
    ``total`` super blocks of which ``done`` are already done; ``n_steps`` steps.
    """

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
        """One super block done."""
        if self.bar is not None:
            self.bar.update(1)

    def step_done(self, k: int, step, elapsed: float):
        """Step ``k`` (a :class:`blocksim.io.Step`) is written, ``elapsed`` seconds after it started."""
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
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


_IGNORED_FOR_RESUME = {("run", "output"), ("run", "numba_threads"), ("run", "progress")}


def resume_mismatch(file_cfg: Config, cfg: Config) -> str | None:
    """The first config field in which ``cfg`` differs from a partial run's ``file_cfg``, or None.

    ``run.output``, ``run.numba_threads``, ``run.progress`` may differ; an unset seed matches any.
    """
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


def set_threads(cfg: Config) -> None:
    """Apply ``run.numba_threads`` (0 = leave numba's default)."""
    n = cfg.run.numba_threads
    if n:
        import numba

        if n > numba.config.NUMBA_NUM_THREADS:
            raise InputError(
                f"run.numba_threads = {n}: must be ≤ {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)"
            )
        numba.set_num_threads(n)


def mark_failed(part: Path, reason: str) -> None:
    """Set status "failed" and ``failure_reason`` on a partial file (never masks the original error)."""
    if part.exists():
        try:
            bio.update_file(part, attrs={"status": "failed", "failure_reason": reason, "finished": bio.now()})
        except Exception:  # pragma: no cover - never mask the original error
            log.exception("could not mark %s as failed", part)


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


def load_partial(part: Path, cfg: Config):
    """State to continue ``part``: ``(cfg, start, pool_e, pool_t, lineage, members_history)``.

    Any problem with the file (damaged, another config) is an :class:`InputError` that ends with
    "use --force to start over".
    """
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
        mismatch = resume_mismatch(file_cfg, cfg)
        if mismatch:
            raise InputError(f"--resume: {mismatch}; use --force to start over")
        cfg = load_config(cfg, {"run.seed": file_cfg.run.seed})
        steps = tr.steps
        indices = [s.index for s in steps]
        if indices != list(range(len(indices))):
            raise InputError(f"--resume: {str(part)!r} has non-consecutive complete steps {indices}")
        if not steps:
            return cfg, 0, None, None, None, []
        last = steps[-1]
        history = [s.members for s in steps]
        lineage = np.asarray(last.diagnostics["lineage_out"], dtype=np.int64)
        resumed = tuple(tr.attrs.get("resumed", ())) if isinstance(tr.attrs.get("resumed"), tuple) else ()
    bio.update_file(part, attrs={"status": "running", "resumed": list(resumed) + [bio.now()],
                                 "failure_reason": ""})
    return cfg, last.index + 1, last.superblock_energies, last.superblock_stress, lineage, history
