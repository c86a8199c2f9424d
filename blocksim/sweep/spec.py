"""Sweep specifications: the readable description of a parameter sweep (``SWEEP.toml``).

A sweep file has a base run config and the parameters to vary. Example (``runs/sweep_example.toml``)::

    [sweep]
    name = "mb_coupling"          # prefix of every output file name and the SLURM job name
    output_dir = "out/mb_coupling" # relative to this file
    entropy = 20240501            # root of all task seeds
    replicates = 2                # independent runs per parameter point (>= 1)

    base = "quickstart.toml"      # a run config by path (relative to this file) ...
    # [base]                      # ... or inline as a table, same layout as a run config

    [grid]                        # Cartesian product over dotted config keys
    "model.coupling" = [0.0, 0.02]

    [zip]                         # lists of equal length, varied together
    "model.cl_over_ct" = [1.5, 1.7]

The finalized form is :class:`SweepSpec` with a tuple of :class:`Task`. Task order is fixed: the grid
product with the first grid key slowest, then the zip rows, then the replicates (fastest). Task ``i``
gets the seed ``SeedSequence(entropy, spawn_key=(i,))`` whoever runs it, and a file name built from
the swept keys (TeNPy's ``output_filename_from_dict``): ``{name}_{label}_{value}..._rep_{r}.h5``.
Two tasks never share a file name: collisions are rejected when the spec is loaded.

The executor sections ``[local]``, ``[dask]`` and ``[slurm]`` are parsed here too (see
:class:`LocalOptions`, :class:`DaskOptions`, :class:`SlurmOptions`); docs/sweeps.md lists every key.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, suggest

__all__ = [
    "Task",
    "SweepSpec",
    "LocalOptions",
    "DaskOptions",
    "SlurmOptions",
    "load_spec",
    "filename_for",
    "task_config",
    "RESERVED_KEYS",
]

#: config keys set by the sweep for every task; sweeping them is an error (use ``replicates``).
RESERVED_KEYS = ("run.seed", "run.spawn_key", "run.output")

TOP_KEYS = ("sweep", "base", "grid", "zip", "local", "dask", "slurm")
SWEEP_KEYS = (
    "name", "output_dir", "entropy", "replicates", "numba_threads", "hdf5_file_locking",
    "filename", "runner", "resume_partial",
)
FILE_LOCKING = ("auto", "true", "false", "best-effort")
_SAFE = re.compile(r"[^A-Za-z0-9_.+\-=]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def resolve_runner(path: str):
    """Import ``sweep.runner`` (``"module:function"``) and return the callable; InputError if it cannot be.

    This imports and later calls arbitrary code named by the sweep file: a sweep file is trusted like
    a script (docs/sweeps.md, "Security").
    """
    import importlib

    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"sweep.runner: cannot import {path!r} ({' '.join(str(exc).split())})") from None
    except Exception as exc:  # the module itself failed while being imported
        raise InputError(f"sweep.runner: importing {path!r} failed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})") from None
    if not callable(fn):
        raise InputError(f"sweep.runner: {path!r} is not callable")
    return fn


@dataclass(frozen=True)
class Task:
    """One run of a sweep.

    Attributes
    ----------
    index : position in the fixed enumeration order; also the seed's spawn key and the SLURM array index.
    task_id : stable identifier, the output file name without ``.h5``.
    params : ``(dotted key, value)`` pairs of the swept keys, in the order of the sweep file.
    replicate : replicate number, 0 .. replicates-1.
    filename : output file name (no directory), ``task_id + ".h5"``.
    """

    index: int
    task_id: str
    params: tuple[tuple[str, Any], ...]
    replicate: int

    @property
    def filename(self) -> str:
        """The task's output file name, ``{task_id}.h5``."""
        return self.task_id + ".h5"

    def overrides(self) -> dict[str, Any]:
        """The swept keys as ``{dotted key: value}`` (without the seed)."""
        return dict(self.params)


@dataclass(frozen=True)
class LocalOptions:
    """``[local]``: the process-pool executor.

    workers : worker processes (None: cores // numba_threads).
    cores : cores the sweep may use (None: the CPUs this process may run on).
    """

    workers: int | None = None
    cores: int | None = None


@dataclass(frozen=True)
class DaskOptions:
    """``[dask]``: the dask.distributed executor.

    scheduler : address of a running scheduler ("tcp://host:8786"); None starts a cluster.
    cluster : "local" (``distributed.LocalCluster``) or "slurm" (``dask_jobqueue.SLURMCluster``).
    n_workers : workers of a started LocalCluster, or jobs of a SLURMCluster.
    threads_per_worker : dask threads per worker process (tasks run concurrently in one worker).
    jobqueue : keyword arguments passed to ``dask_jobqueue.SLURMCluster`` (cores, memory, queue, ...).
    lost_worker_timeout : seconds without any connected worker, after tasks were submitted, before the
        sweep gives up on its unfinished tasks (SLURMCluster: as soon as none of its worker jobs is
        still queued or running).
    """

    scheduler: str | None = None
    cluster: str = "local"
    n_workers: int | None = None
    threads_per_worker: int = 1
    jobqueue: tuple[tuple[str, Any], ...] = ()
    lost_worker_timeout: float = 120.0


@dataclass(frozen=True)
class SlurmOptions:
    """``[slurm]``: the sbatch job-array executor.

    partition : partition (``#SBATCH --partition``); checked against ``sinfo`` or the template's list.
    time : wall time per task, SLURM format ("HH:MM:SS" or "D-HH:MM:SS").
    mem : memory per task, SLURM format ("2G", "500M").
    cpus_per_task : CPUs per array task (None: the sweep's numba_threads); NUMBA_NUM_THREADS follows it.
    throttle : at most this many array tasks run at once (``--array=...%N``); None: no limit.
    template : sbatch template path, relative to the sweep file (None: runs/slurm/job_array.sbatch.template).
    signal_grace : seconds before the time limit at which SLURM sends SIGTERM (``--signal=B:TERM@S``).
    extra : further ``#SBATCH`` options, e.g. ["--account=abc", "--qos=normal"].
    """

    partition: str | None = None
    time: str = "01:00:00"
    mem: str = "2G"
    cpus_per_task: int | None = None
    throttle: int | None = None
    template: str | None = None
    signal_grace: int = 60
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    """A finalized sweep.

    Attributes
    ----------
    path : the sweep file (absolute), or None for a spec built from a dict.
    name : prefix of file names and SLURM job name.
    output_dir : directory of the task files, manifest and logs (absolute).
    entropy : root entropy of the task seeds, ``SeedSequence(entropy, spawn_key=(index,))``.
    replicates : runs per parameter point.
    numba_threads : Numba threads per task (capped so that threads x workers <= cores).
    hdf5_file_locking : "auto" (leave HDF5_USE_FILE_LOCKING alone), "true", "false" or "best-effort".
    resume_partial : continue an interrupted task from its ``.part`` file instead of restarting it.
    runner : import path "module:function" of the function that runs one config
        (signature of :func:`blocksim.run`); the default is "blocksim:run".
    base : the resolved base config as a dict (inline table, or the file named by ``base``).
    base_source : the base config's path, or "inline".
    grid : ``(key, values)`` pairs of the Cartesian grid.
    zipped : ``(key, values)`` pairs varied together.
    tasks : every task, in enumeration order.
    local, dask, slurm : executor options.
    text : the sweep file's text (recorded in the manifest and the merged summary).
    """

    path: Path | None
    name: str
    output_dir: Path
    entropy: int
    replicates: int
    numba_threads: int
    hdf5_file_locking: str
    resume_partial: bool
    runner: str
    base: dict
    base_source: str
    grid: tuple[tuple[str, tuple], ...]
    zipped: tuple[tuple[str, tuple], ...]
    tasks: tuple[Task, ...]
    local: LocalOptions = field(default_factory=LocalOptions)
    dask: DaskOptions = field(default_factory=DaskOptions)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    text: str = ""

    @property
    def swept_keys(self) -> tuple[str, ...]:
        """The dotted config keys varied by the sweep (grid keys, then zip keys)."""
        return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.zipped)

    def output_path(self, task: Task) -> Path:
        """Final file of ``task`` (written as ``.h5.part`` first, renamed on success)."""
        return self.output_dir / task.filename

    def part_path(self, task: Task) -> Path:
        """The in-progress file of ``task`` (``OUT.h5.part``)."""
        return self.output_dir / (task.filename + ".part")

    @property
    def state_dir(self) -> Path:
        """Per-task status and lock files (``.tasks/``)."""
        return self.output_dir / ".tasks"

    @property
    def log_dir(self) -> Path:
        """Directory of the per-task logs (``output_dir/logs``)."""
        return self.output_dir / "logs"

    def task(self, index: int) -> Task:
        """Task ``index`` (InputError outside 0 … len(tasks) − 1)."""
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.tasks):
            raise InputError(f"--index: {index!r} is out of range (this sweep has tasks 0..{len(self.tasks) - 1})")
        return self.tasks[index]

    def seed_sequence(self, task: Task):
        """``numpy.random.SeedSequence(entropy, spawn_key=(task.index,))``."""
        import numpy as np

        return np.random.SeedSequence(self.entropy, spawn_key=(task.index,))


# ---------------------------------------------------------------------------------------- loading
def load_spec(source, *, validate_configs: bool = True) -> SweepSpec:
    """Read and validate a sweep from a TOML file path, TOML text or a dict.

    Raises :class:`InputError` (one line) for unknown keys, empty or mistyped grids, zip lists of
    unequal length, ``replicates < 1``, swept reserved keys and file-name collisions. With
    ``validate_configs`` every task's config is built once through :func:`blocksim.config.load_config`,
    so a key or value the run config rejects is reported before anything runs.
    """
    path = None
    if isinstance(source, dict):
        data, text = source, ""
        base_dir = Path.cwd()
    else:
        s = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
        if isinstance(source, os.PathLike) or ("\n" not in s and (s.endswith(".toml") or Path(s).exists())):
            path = Path(s).resolve()
            if not path.is_file():
                raise InputError(f"sweep file: {s!r} does not exist")
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(f"sweep file: {s!r} cannot be read ({exc.strerror or exc})") from None
            except UnicodeDecodeError:
                raise InputError(f"sweep file: {s!r} is not a UTF-8 text file") from None
            base_dir = path.parent
        else:
            text, base_dir = s, Path.cwd()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"sweep file {path or '<text>'}: invalid TOML: {exc}") from None

    _check_keys(data, TOP_KEYS, "sweep file")
    sw = data.get("sweep", {})
    _check_table(sw, "[sweep]")
    _check_keys(sw, SWEEP_KEYS, "sweep")

    name = _get(sw, "name", str, "sweep", "sweep")
    if not name or _SAFE.sub("", name) != name or name.startswith("."):
        raise InputError(f"sweep.name: {name!r} must be non-empty, use only letters, digits and _ . + - = "
                         "and not start with '.'")
    output_dir_text = _get(sw, "output_dir", str, f"out/{name}", "sweep")
    if _CONTROL.search(output_dir_text) or not output_dir_text.strip():
        raise InputError(f"sweep.output_dir: {output_dir_text!r} must be a non-empty path without control "
                         "characters (line breaks, tabs, ...)")
    output_dir = Path(output_dir_text)
    output_dir = (base_dir / output_dir).resolve() if not output_dir.is_absolute() else output_dir
    entropy = _get(sw, "entropy", int, None, "sweep")
    if entropy is None:
        raise InputError("sweep.entropy: missing (give a non-negative integer, the root of all task seeds)")
    if not 0 <= entropy < 2**64:
        raise InputError(f"sweep.entropy: {entropy} must be an integer with 0 <= entropy < 2^64")
    replicates = _get(sw, "replicates", int, 1, "sweep")
    if replicates < 1:
        raise InputError(f"sweep.replicates: {replicates} must be >= 1")
    numba_threads = _get(sw, "numba_threads", int, 1, "sweep")
    if numba_threads < 1:
        raise InputError(f"sweep.numba_threads: {numba_threads} must be >= 1")
    locking = sw.get("hdf5_file_locking", "auto")
    locking = {True: "true", False: "false"}.get(locking, locking) if isinstance(locking, bool) else locking
    if locking not in FILE_LOCKING:
        raise InputError(f"sweep.hdf5_file_locking: {locking!r} is not one of {', '.join(FILE_LOCKING)}"
                         + suggest(str(locking), FILE_LOCKING))
    resume_partial = _get(sw, "resume_partial", bool, True, "sweep")
    runner = _get(sw, "runner", str, "blocksim:run", "sweep")
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", runner):
        raise InputError(f"sweep.runner: {runner!r} must be an import path 'module:function'")
    resolve_runner(runner)  # imported now (trusted code, docs/sweeps.md "Security"), not first in every task

    base, base_source = _load_base(data.get("base"), base_dir)
    grid = _parse_lists(data.get("grid"), "grid")
    zipped = _parse_lists(data.get("zip"), "zip")
    if zipped:
        lengths = {k: len(v) for k, v in zipped}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
            raise InputError(f"zip: lists must have equal lengths (got {detail})")
    keys = [k for k, _ in grid] + [k for k, _ in zipped]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise InputError(f"grid/zip: key {sorted(dup)[0]!r} is swept twice")
    for k in keys:
        if k in RESERVED_KEYS:
            raise InputError(f"grid/zip: {k!r} is set per task by the sweep (seeds come from sweep.entropy; "
                             "use sweep.replicates for more runs)")

    labels = _labels(keys)
    formats = _filename_formats(sw.get("filename", {}), keys)
    tasks = _enumerate(name, grid, zipped, replicates, labels, formats)

    spec = SweepSpec(
        path=path, name=name, output_dir=output_dir, entropy=entropy, replicates=replicates,
        numba_threads=numba_threads, hdf5_file_locking=locking, resume_partial=resume_partial,
        runner=runner, base=base, base_source=base_source, grid=grid, zipped=zipped, tasks=tasks,
        local=_local_options(data.get("local", {})), dask=_dask_options(data.get("dask", {})),
        slurm=_slurm_options(data.get("slurm", {})), text=text,
    )
    if validate_configs:
        for task in tasks:
            task_config(spec, task)
    return spec


def task_config(spec: SweepSpec, task: Task, numba_threads: int | None = None):
    """The resolved :class:`blocksim.config.Config` of ``task`` (errors name the task and key)."""
    from ..config import load_config

    overrides = task.overrides()
    overrides.update({
        "run.seed": spec.entropy,
        "run.spawn_key": [task.index],
        "run.numba_threads": int(numba_threads or spec.numba_threads),
        "run.progress": "none",
    })
    try:
        return load_config(spec.base, overrides)
    except InputError as exc:
        swept = ", ".join(f"{k}={v!r}" for k, v in task.params) or "no swept keys"
        raise InputError(f"sweep task {task.index} ({swept}): {exc}") from None


def _check_keys(table: dict, valid, where: str) -> None:
    for key in table:
        if key not in valid:
            raise InputError(f"{where}: unknown key {key!r}{suggest(key, valid)}")


def _check_table(value, where: str) -> None:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a table, got {type(value).__name__}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _get(table: dict, key: str, typ, default, where: str):
    if key not in table:
        return default
    value = table[key]
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise InputError(f"{where}.{key}: expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {value!r}")
    return value


def _load_base(value, base_dir: Path) -> tuple[dict, str]:
    if value is None:
        raise InputError("base: missing (give base = \"run.toml\" or an inline [base] table)")
    if isinstance(value, str):
        p = Path(value)
        p = p if p.is_absolute() else base_dir / p
        if not p.is_file():
            raise InputError(f"base: config file {value!r} not found (relative to {base_dir})")
        try:
            return tomllib.loads(p.read_text()), str(p.resolve())
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"base: {p} is not valid TOML: {exc}") from None
    if isinstance(value, dict):
        return value, "inline"
    raise InputError(f"base: expected a file path or a table, got {type(value).__name__}")


def _flatten(table: dict, prefix: str = "") -> dict:
    """``{"model": {"coupling": [..]}}`` → ``{"model.coupling": [..]}`` (quoted dotted keys pass through)."""
    out = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _value_kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return type(v).__name__


def _parse_lists(table, where: str) -> tuple[tuple[str, tuple], ...]:
    if table is None:
        return ()
    _check_table(table, f"[{where}]")
    flat = _flatten(table)
    if not flat:
        raise InputError(f"{where}: empty (give at least one key with a non-empty list of values, or drop [{where}])")
    out = []
    for key, values in flat.items():
        if not isinstance(values, list):
            raise InputError(f"{where}.{key}: expected a list of values, got {values!r}")
        if not values:
            raise InputError(f"{where}.{key}: empty list (a sweep axis needs at least one value)")
        kinds = {_value_kind(v) for v in values}
        if len(kinds) > 1:
            raise InputError(f"{where}.{key}: values of mixed types {sorted(kinds)} in {values!r}")
        if kinds == {"number"} and any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise InputError(f"{where}.{key}: non-finite value in {values!r}")
        if kinds == {"number"} and any(isinstance(v, float) for v in values):
            values = [float(v) for v in values]  # 1 and 1.0 in one axis mean the same number
        if len(set(map(repr, values))) != len(values):
            raise InputError(f"{where}.{key}: repeated value in {values!r} (use sweep.replicates for repeats)")
        out.append((key, tuple(values)))
    return tuple(out)


def _labels(keys: list[str]) -> dict[str, str]:
    """File-name label per swept key: its last component, or the whole key where that is ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (l if last.count(l) == 1 else k.replace(".", "-")) for k, l in zip(keys, last)}


def _filename_formats(table, keys) -> dict[str, str]:
    _check_table(table, "sweep.filename")
    flat = _flatten(table)
    for key, fmt in flat.items():
        if key not in keys:
            raise InputError(f"sweep.filename: {key!r} is not a swept key{suggest(key, keys)}")
        if not isinstance(fmt, str):
            raise InputError(f"sweep.filename.{key}: expected a format string like 'g{{:.3g}}', got {fmt!r}")
    return flat


def format_value(value) -> str:
    """Text of a parameter value in a file name: shortest round-trip repr for numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def filename_for(name: str, params, replicate: int | None, labels: dict, formats: dict) -> str:
    """The task id (file stem) for ``params``: ``{name}_{label}_{value}..._rep_{r}``, unsafe characters → '-'."""
    parts = [name]
    for key, value in params:
        if key in formats:
            try:
                parts.append(formats[key].format(value))
            except (ValueError, IndexError, KeyError) as exc:
                raise InputError(f"sweep.filename.{key}: format {formats[key]!r} fails on {value!r}: {exc}") from None
        else:
            parts.append(f"{labels[key]}_{format_value(value)}")
    if replicate is not None:
        parts.append(f"rep_{replicate}")
    return _SAFE.sub("-", "_".join(parts))


def _enumerate(name, grid, zipped, replicates, labels, formats) -> tuple[Task, ...]:
    grid_points = list(itertools.product(*[vals for _, vals in grid])) if grid else [()]
    zip_rows = list(zip(*[vals for _, vals in zipped])) if zipped else [()]
    grid_keys = [k for k, _ in grid]
    zip_keys = [k for k, _ in zipped]
    tasks, seen = [], {}
    for point in grid_points:
        for row in zip_rows:
            params = tuple(zip(grid_keys, point)) + tuple(zip(zip_keys, row))
            for rep in range(replicates):
                index = len(tasks)
                task_id = filename_for(name, params, rep if replicates > 1 else None, labels, formats)
                if task_id in seen:
                    raise InputError(
                        f"sweep.filename: tasks {seen[task_id]} and {index} would both write {task_id}.h5 "
                        "(make the [sweep.filename] formats distinguish them)"
                    )
                seen[task_id] = index
                tasks.append(Task(index=index, task_id=task_id, params=params, replicate=rep))
    return tuple(tasks)


# ------------------------------------------------------------------------------ executor options
def _positive(value, where: str, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{where}: {value!r} must be a positive integer")
    return value


def _local_options(table) -> LocalOptions:
    _check_table(table, "[local]")
    _check_keys(table, ("workers", "cores"), "local")
    return LocalOptions(workers=_positive(table.get("workers"), "local.workers"),
                        cores=_positive(table.get("cores"), "local.cores"))


def _dask_options(table) -> DaskOptions:
    _check_table(table, "[dask]")
    valid = ("scheduler", "cluster", "n_workers", "threads_per_worker", "jobqueue", "lost_worker_timeout")
    _check_keys(table, valid, "dask")
    lost = table.get("lost_worker_timeout", 120.0)
    if isinstance(lost, bool) or not isinstance(lost, (int, float)) or not 0 < lost < 1e9:
        raise InputError(f"dask.lost_worker_timeout: {lost!r} must be a number of seconds > 0")
    cluster = _get(table, "cluster", str, "local", "dask")
    if cluster not in ("local", "slurm"):
        raise InputError(f"dask.cluster: {cluster!r} is not one of local, slurm{suggest(cluster, ('local', 'slurm'))}")
    jobqueue = table.get("jobqueue", {})
    _check_table(jobqueue, "[dask.jobqueue]")
    return DaskOptions(
        scheduler=_get(table, "scheduler", str, None, "dask"),
        cluster=cluster,
        n_workers=_positive(table.get("n_workers"), "dask.n_workers"),
        threads_per_worker=_positive(table.get("threads_per_worker", 1), "dask.threads_per_worker", False),
        jobqueue=tuple(jobqueue.items()),
        lost_worker_timeout=float(lost),
    )


_SLURM_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$")
_PARTITION = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _slurm_options(table) -> SlurmOptions:
    _check_table(table, "[slurm]")
    valid = ("partition", "time", "mem", "cpus_per_task", "throttle", "template", "signal_grace", "extra")
    _check_keys(table, valid, "slurm")
    partition = _get(table, "partition", str, None, "slurm")
    if partition is not None and not _PARTITION.match(partition):
        raise InputError(f"slurm.partition: {partition!r} is not a valid partition name")
    time = _get(table, "time", str, "01:00:00", "slurm")
    if not _SLURM_TIME.match(time):
        raise InputError(f"slurm.time: {time!r} is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)")
    mem = _get(table, "mem", str, "2G", "slurm")
    if not _SLURM_MEM.match(mem):
        raise InputError(f"slurm.mem: {mem!r} is not a SLURM memory size (e.g. 500M, 2G)")
    extra = table.get("extra", [])
    if not isinstance(extra, list) or not all(isinstance(e, str) and e.startswith("--") for e in extra):
        raise InputError(f"slurm.extra: {extra!r} must be a list of sbatch options like '--account=abc'")
    if any("\n" in e for e in extra):
        raise InputError("slurm.extra: options must not contain line breaks")
    grace = _get(table, "signal_grace", int, 60, "slurm")
    if grace < 0:
        raise InputError(f"slurm.signal_grace: {grace} must be >= 0 seconds")
    return SlurmOptions(
        partition=partition, time=time, mem=mem,
        cpus_per_task=_positive(table.get("cpus_per_task"), "slurm.cpus_per_task"),
        throttle=_positive(table.get("throttle"), "slurm.throttle"),
        template=_get(table, "template", str, None, "slurm"),
        signal_grace=grace, extra=tuple(extra),
    )
