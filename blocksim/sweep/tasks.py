"""Running one task of a sweep, and the per-task state on disk.

:func:`run_task` is what every executor runs (``blocksim run-task SWEEP.toml --index I`` calls it; so do
the process-pool and dask workers). For task ``i`` it

1. builds the run config: the base config, the task's swept values, ``run.seed = entropy``,
   ``run.spawn_key = [i]`` (so the run's streams come from ``SeedSequence(entropy, spawn_key=(i, ...))``),
   ``run.numba_threads`` and ``run.progress = "none"``;
2. takes an exclusive ``flock`` on ``.tasks/NAME.lock`` (held while it runs; the kernel drops it when the
   process dies, which is how a crashed task is told from a running one);
3. writes ``.tasks/NAME.json`` = running and calls the runner (:func:`blocksim.run`) with output
   ``NAME.h5``: the run writes ``NAME.h5.part`` and renames it atomically to ``NAME.h5`` when it is
   complete (``resume=True`` continues an existing ``.part`` file). run_task then checks the final file's
   ``status`` attribute is "complete" and writes complete; on an exception (or SIGTERM, which the run
   turns into ``RunInterrupted`` after closing its file, and run_task into :class:`TaskTerminated`) it
   writes failed with a one-line message.

The task state visible from outside (:func:`task_state`) is one of ``done``, ``running``, ``failed``,
``missing``; an interrupted task (its process died without writing failed) counts as failed with the
message "interrupted".
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..outputlock import lock_path
from .spec import SweepSpec, Task, load_spec, task_config

__all__ = [
    "TaskResult",
    "TaskState",
    "TaskTerminated",
    "run_task",
    "task_config",
    "task_state",
    "numba_threads_for",
    "available_cores",
    "STATES",
]

STATES = ("done", "running", "failed", "missing")


class TaskTerminated(BaseException):
    """Raised inside a task when the process receives SIGTERM (SLURM's ``--signal``, ``scancel``)."""


@dataclass(frozen=True)
class TaskResult:
    """What :func:`run_task` did.

    index : task index.
    state : "done" (ran now), "skipped" (was already complete), "running" (another process holds it),
        "failed" or "terminated".
    path : final file (exists when state is done or skipped).
    message : one-line failure message, or "".
    seconds : wall time of the run itself.
    numba_threads : Numba threads the task used.
    """

    index: int
    state: str
    path: str
    message: str = ""
    seconds: float = 0.0
    numba_threads: int = 0


@dataclass(frozen=True)
class TaskState:
    """State of a task as seen from outside: ``state`` in :data:`STATES` plus the recorded status."""

    index: int
    state: str
    message: str
    path: Path
    info: dict


# ------------------------------------------------------------------------------------- threads
def available_cores() -> int:
    """CPUs this process may run on (SLURM's allocation, cgroup affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def numba_threads_for(spec: SweepSpec, concurrent_tasks: int, cores: int | None = None) -> int:
    """Numba threads per task so that threads × concurrent tasks ≤ cores (at least 1, at most the spec's)."""
    cores = available_cores() if cores is None else cores
    return max(1, min(spec.numba_threads, cores // max(1, concurrent_tasks)))


def _limit_numba_threads(n: int) -> int:
    """Set NUMBA_NUM_THREADS before numba is imported, or lower the active count after; return it."""
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
        return n
    import numba

    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _set_file_locking(mode: str) -> None:
    if mode != "auto":
        os.environ["HDF5_USE_FILE_LOCKING"] = {"true": "TRUE", "false": "FALSE", "best-effort": "BEST_EFFORT"}[mode]


# ------------------------------------------------------------------------------- state on disk
def _status_path(spec: SweepSpec, task: Task) -> Path:
    return spec.state_dir / f"{task.task_id}.json"


def _lock_path(spec: SweepSpec, task: Task) -> Path:
    return spec.state_dir / f"{task.task_id}.lock"


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _read_status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _lock_held(lock: Path) -> bool:
    """True if some live process holds the task's lock (probe with a shared, non-blocking flock)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _file_complete(path: Path) -> bool:
    """The trajectory file exists and its root ``status`` attribute is "complete"."""
    if not path.is_file():
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            status = f.attrs.get("status", "")
    except OSError:
        return False
    return (status.decode() if isinstance(status, bytes) else str(status)) == "complete"


def task_state(spec: SweepSpec, task: Task) -> TaskState:
    """The task's state: done, running, failed (including interrupted) or missing."""
    final = spec.output_path(task)
    info = _read_status(_status_path(spec, task))
    recorded = info.get("status", "")
    if final.is_file():  # only a finished, verified .part file is ever renamed to the final name
        return TaskState(task.index, "done", "", final, info)
    if _lock_held(_lock_path(spec, task)):
        return TaskState(task.index, "running", "", final, info)
    if recorded == "failed":
        return TaskState(task.index, "failed", info.get("message", "failed"), final, info)
    if recorded == "running" or spec.part_path(task).exists():
        where = f" on {info['host']} (pid {info['pid']})" if "host" in info else ""
        return TaskState(task.index, "failed", f"interrupted: the task process{where} ended without finishing",
                         final, info)
    return TaskState(task.index, "missing", "", final, info)


# ------------------------------------------------------------------------------------ running
def _resolve_runner(path: str):
    from .spec import resolve_runner

    return resolve_runner(path)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _on_sigterm(signum, frame):
    raise TaskTerminated("terminated by SIGTERM")


def run_task(spec, index: int, *, numba_threads: int | None = None, raise_errors: bool = False) -> TaskResult:
    """Run task ``index`` of ``spec`` (a :class:`SweepSpec` or a sweep file path) unless it is complete.

    ``numba_threads`` overrides the spec's threads per task (executors pass the value that keeps
    threads × workers ≤ cores). A SIGTERM received while the task runs (main thread only) stops it,
    records it as failed ("terminated by SIGTERM") and re-raises :class:`TaskTerminated`. Other
    exceptions are recorded and returned as state "failed" (or re-raised with ``raise_errors``).
    """
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, validate_configs=False)
    task = spec.task(index)
    final, part = spec.output_path(task), spec.part_path(task)  # part: blocksim.io.part_path(final)
    threads = _limit_numba_threads(int(numba_threads or spec.numba_threads))
    if final.is_file() and _file_complete(final):
        return TaskResult(index, "skipped", str(final), numba_threads=threads)
    _set_file_locking(spec.hdf5_file_locking)
    spec.state_dir.mkdir(parents=True, exist_ok=True)

    lock_fd = os.open(_lock_path(spec, task), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _acquire(lock_fd):
            return TaskResult(index, "running", str(final), "held by another process", numba_threads=threads)
        if final.is_file() and _file_complete(final):  # finished while we waited for the lock
            return TaskResult(index, "skipped", str(final), numba_threads=threads)
        return _run_locked(spec, task, final, part, threads, raise_errors)
    finally:
        os.close(lock_fd)  # releases the flock


def _acquire(fd: int, patience: float = 5.0) -> bool:
    """Exclusive non-blocking flock, retried briefly (status probes hold a shared lock for microseconds)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _run_locked(spec, task, final: Path, part: Path, threads: int, raise_errors: bool) -> TaskResult:
    status_path = _status_path(spec, task)
    info = {
        "index": task.index, "task_id": task.task_id, "status": "running", "host": socket.gethostname(),
        "pid": os.getpid(), "numba_threads": threads,
        "hdf5_file_locking": os.environ.get("HDF5_USE_FILE_LOCKING", "(default)"),
        "slurm_job": os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "")),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json_atomic(status_path, info)
    in_main = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    t0 = time.perf_counter()
    try:
        config = task_config(spec, task, threads)
        resume = spec.resume_partial and part.is_file()
        runner = _resolve_runner(spec.runner)
        # this process holds the task's flock, so an output lock left beside the file belongs to a task
        # process that died (possibly on another node, where its pid cannot be checked): remove it
        lock_path(final).unlink(missing_ok=True)
        try:
            # the one call into blocksim.run: it writes NAME.h5.part and renames it to NAME.h5 on success
            runner(config, output=final, resume=resume, force=True)
        except (InputError, OSError, KeyError, ValueError):
            if not resume:
                raise
            runner(config, output=final, resume=False, force=True)  # the .part file could not be resumed
        if not _file_complete(final):
            raise RuntimeError(f"{final.name} was not written and marked complete by the runner")
        seconds = time.perf_counter() - t0
        info.update(status="complete", seconds=round(seconds, 3), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_json_atomic(status_path, info)
        return TaskResult(task.index, "done", str(final), seconds=seconds, numba_threads=threads)
    except TaskTerminated as exc:
        _record_failure(status_path, info, exc)
        raise
    except (Exception, KeyboardInterrupt) as exc:
        if getattr(exc, "signum", None) == signal.SIGTERM:  # blocksim.rg.RunInterrupted: closed cleanly
            term = TaskTerminated("terminated by SIGTERM")
            _record_failure(status_path, info, term)
            raise term from exc
        _record_failure(status_path, info, exc)
        if raise_errors or isinstance(exc, KeyboardInterrupt):
            raise
        return TaskResult(task.index, "failed", str(final), _one_line(exc), time.perf_counter() - t0, threads)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_handler)


def _record_failure(status_path: Path, info: dict, exc: BaseException) -> None:
    info.update(status="failed", message=_one_line(exc), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                traceback="".join(traceback.format_exception(exc)[-3:]))
    _write_json_atomic(status_path, info)
