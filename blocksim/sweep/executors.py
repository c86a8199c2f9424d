"""Executors: run a sweep's tasks on a local process pool, a dask cluster, or a SLURM job array.

Every executor runs the same function for task ``i``, :func:`blocksim.sweep.tasks.run_task` (the
SLURM script calls it through ``blocksim run-task SWEEP.toml --index $SLURM_ARRAY_TASK_ID``), so the
results do not depend on the executor or on the number of workers: the seed is a function of ``i``
alone and each task uses the same number of Numba threads wherever it runs (``sweep.numba_threads``,
lowered only when threads × concurrent tasks would exceed the cores).

* :func:`run_local` — a ``ProcessPoolExecutor`` (spawned processes) with ``workers`` processes.
* :func:`run_dask` — ``distributed.Client`` on a given scheduler, a ``LocalCluster``, or
  ``dask_jobqueue.SLURMCluster`` (optional import).
* :func:`submit_slurm` / :func:`wait_slurm` — render ``runs/slurm/job_array.sbatch.template``,
  ``sbatch`` it, and poll ``squeue`` until the array has left the queue.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from ..errors import InputError, suggest
from .spec import SweepSpec
from .tasks import TaskResult, TaskTerminated, available_cores, numba_threads_for, run_task

__all__ = [
    "run_local",
    "run_dask",
    "render_sbatch",
    "submit_slurm",
    "wait_slurm",
    "check_partition",
    "array_ranges",
    "default_template",
]


def _say(log, text: str) -> None:
    if log is not None:
        log(text)


# ------------------------------------------------------------------------------------------- local
def _init_worker(threads: int) -> None:
    """Process-pool initializer: fix Numba's thread count before anything imports numba."""
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means


def run_local(spec: SweepSpec, indices, *, workers: int | None = None, cores: int | None = None,
              log=print, on_result=None) -> list[TaskResult]:
    """Run ``indices`` on a pool of ``workers`` spawned processes; return the results in completion order.

    ``workers`` defaults to ``[local] workers`` or cores // numba_threads; each task gets
    ``min(numba_threads, cores // workers)`` Numba threads. On SIGTERM or Ctrl-C the pool's workers
    get SIGTERM (each task records itself as failed and closes its file) and the exception propagates.
    """
    indices = list(indices)
    cores = cores or spec.local.cores or available_cores()
    workers = workers or spec.local.workers or max(1, cores // spec.numba_threads)
    if workers < 1:
        raise InputError(f"--workers: {workers} must be >= 1")
    threads = numba_threads_for(spec, workers, cores)
    _say(log, f"local executor: {workers} worker process(es) x {threads} numba thread(s) per task "
              f"(NUMBA_NUM_THREADS={threads}, {cores} core(s)); {len(indices)} task(s) to run")
    results: list[TaskResult] = []
    if not indices:
        return results
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=min(workers, len(indices)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    old = signal.signal(signal.SIGTERM, _raise_terminated) if _in_main_thread() else None
    try:
        futures = [pool.submit(run_task, spec, i, numba_threads=threads) for i in indices]
        for fut in as_completed(futures):
            res = fut.result()
            results.append(res)
            if on_result is not None:
                on_result(res)
    except BaseException:
        _terminate_pool(pool)
        raise
    finally:
        if _in_main_thread():
            signal.signal(signal.SIGTERM, old)
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum, frame):
    raise TaskTerminated("sweep terminated by SIGTERM")


def _terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel queued tasks and send SIGTERM to the pool's worker processes (by pid)."""
    for fut in list(getattr(pool, "_pending_work_items", {}).values()):
        fut.future.cancel()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.join(timeout=30)


# -------------------------------------------------------------------------------------------- dask
def _dask_task(spec: SweepSpec, index: int, threads_by_worker: dict, default_threads: int) -> TaskResult:
    """Run one task inside a dask worker with the thread count chosen for that worker."""
    from distributed import get_worker

    threads = threads_by_worker.get(get_worker().address, default_threads)
    return run_task(spec, index, numba_threads=threads)


def _scheduler_workers(client) -> dict:
    """The scheduler's worker table, all workers (newer ``distributed`` lists only 5 unless asked)."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # distributed < 2025: no n_workers argument, every worker listed
        return client.scheduler_info()["workers"]


def _threads_per_worker(client, spec: SweepSpec) -> dict:
    """Numba threads for each worker so that, per host, Σ dask threads × numba threads ≤ host cores."""
    workers = _scheduler_workers(client)
    cores = client.run(available_cores)
    per_host: dict[str, int] = {}
    for info in workers.values():
        per_host[info["host"]] = per_host.get(info["host"], 0) + int(info["nthreads"])
    return {addr: max(1, min(spec.numba_threads, cores.get(addr, 1) // max(1, per_host[info["host"]])))
            for addr, info in workers.items()}


def _jobqueue_cluster(spec: SweepSpec, log=print):
    """``dask_jobqueue.SLURMCluster(**[dask.jobqueue])`` after checking the keys against its signature
    and the worker job script with ``sbatch --test-only`` (a rejected script is an input error, not a
    job that never starts)."""
    import inspect

    try:
        from dask_jobqueue import SLURMCluster
        from dask_jobqueue.core import Job, JobQueueCluster
        from dask_jobqueue.slurm import SLURMJob
    except ImportError:
        raise InputError("dask.cluster = 'slurm' needs dask-jobqueue (pip install 'blocksim[jobqueue]')") from None
    kwargs = dict(spec.dask.jobqueue)
    valid = set()
    for fn in (SLURMCluster.__init__, JobQueueCluster.__init__, SLURMJob.__init__, Job.__init__):
        valid |= {n for n, p in inspect.signature(fn).parameters.items()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    valid -= {"self", "job_cls", "scheduler", "name", "config_name", "n_workers", "loop", "asynchronous"}
    for key in kwargs:
        if key not in valid:
            raise InputError(f"dask.jobqueue: unknown key {key!r} (a keyword argument of "
                             f"dask_jobqueue.SLURMCluster){suggest(key, sorted(valid))}")
    try:
        cluster = SLURMCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"dask.jobqueue: {' '.join(str(exc).split())}") from None
    try:
        script = cluster.job_script()
        with tempfile.NamedTemporaryFile("w", prefix="blocksim-dask-job-", suffix=".sh", delete=False) as f:
            f.write(script)
        try:
            out = subprocess.run([_slurm_cmd("sbatch"), "--test-only", f.name], capture_output=True, text=True,
                                 timeout=120)
        finally:
            os.unlink(f.name)
        if out.returncode != 0:
            msg = " ".join(line.strip() for line in out.stderr.splitlines() if line.strip())
            raise InputError(f"dask.jobqueue: sbatch rejects the dask worker job script ({msg})")
    except BaseException:
        cluster.close()
        raise
    return cluster


def _wait_for_dask_workers(client, cluster, *, timeout: float | None, jobqueue: bool) -> None:
    """Block until one worker has connected. For a SLURMCluster, fail when no job could be submitted or
    when every worker job has left the queue without a worker connecting (see ``log_directory``)."""
    t0 = time.monotonic()
    while not _scheduler_workers(client):
        waited = time.monotonic() - t0
        if timeout is not None and waited > timeout:
            raise TimeoutError(f"dask executor: no worker connected within {timeout:.0f} s")
        if jobqueue and waited > 5:
            ids = [getattr(job, "job_id", None) for job in list(cluster.workers.values())]
            if all(i is None for i in ids) and waited > 60:
                raise RuntimeError("dask executor: no SLURM job for the dask workers was submitted in 60 s "
                                   "(see the sbatch error above)")
            ids = [i for i in ids if i]
            if ids and not any(slurm_job_active(i) for i in ids):
                raise RuntimeError(f"dask executor: the worker job(s) {', '.join(ids)} ended before a dask "
                                   "worker connected (see dask.jobqueue.log_directory)")
        time.sleep(0.5 if not jobqueue else 1.0)


def run_dask(spec: SweepSpec, indices, *, scheduler: str | None = None, n_workers: int | None = None,
             threads_per_worker: int | None = None, cores: int | None = None, log=print,
             on_result=None, timeout: float | None = None) -> list[TaskResult]:
    """Run ``indices`` on dask: the scheduler at ``scheduler`` (or ``[dask] scheduler``), else a started
    ``LocalCluster`` (``n_workers`` processes × ``threads_per_worker`` threads, loopback only), or a
    ``dask_jobqueue.SLURMCluster`` when ``[dask] cluster = "slurm"``, scaled to ``min(n_workers, tasks)``
    SLURM jobs. A cluster started here is closed (its SLURM jobs cancelled) when the tasks are done and
    on any error, Ctrl-C or SIGTERM. ``timeout`` bounds the wait for the first worker (default: 600 s
    for a LocalCluster, none for SLURM jobs, which may queue; jobs that fail are detected). Workers lost
    after tasks started are handled by :func:`_collect_dask` (unfinished tasks fail with a message
    once no worker is left; finished task files are kept). Returns the results in completion order.
    """
    indices = list(indices)
    if not indices:
        _say(log, "dask executor: nothing to run, every task is done or running")
        return []
    from distributed import Client, LocalCluster

    opts = spec.dask
    scheduler = scheduler or opts.scheduler
    tpw = threads_per_worker or opts.threads_per_worker
    cores = cores or available_cores()
    cluster = client = None
    jobqueue = False
    old = signal.signal(signal.SIGTERM, _raise_terminated) if _in_main_thread() else None
    results: list[TaskResult] = []
    try:
        if scheduler:
            client = Client(scheduler)
            what = f"scheduler {scheduler}"
        elif opts.cluster == "slurm":
            jobqueue = True
            jobs = min(n_workers or opts.n_workers or 1, len(indices))
            cluster = _jobqueue_cluster(spec, log=log)
            cluster.scale(jobs=jobs)
            client = Client(cluster)
            what = f"dask-jobqueue SLURMCluster, {jobs} SLURM job(s), scheduler {cluster.scheduler_address}"
        else:
            n = n_workers or opts.n_workers or max(1, cores // (tpw * spec.numba_threads))
            threads = numba_threads_for(spec, n * tpw, cores)
            cluster = LocalCluster(n_workers=n, threads_per_worker=tpw, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0",  # the scheduler's HTTP server on a free port
                                   env={"NUMBA_NUM_THREADS": str(threads)})
            client = Client(cluster)
            what = f"LocalCluster with {n} worker process(es) x {tpw} thread(s)"
        _wait_for_dask_workers(client, cluster, jobqueue=jobqueue,
                               timeout=timeout if timeout is not None or jobqueue else 600)
        by_worker = _threads_per_worker(client, spec)
        default = min(by_worker.values()) if by_worker else 1
        shown = sorted(set(by_worker.values())) or [default]
        _say(log, f"dask executor: {what}; NUMBA_NUM_THREADS per task = {','.join(map(str, shown))}; "
                  f"{len(indices)} task(s) to run")
        complete_before = frozenset(i for i in indices if _on_disk(spec, i, "").state == "done")
        futures = client.map(_dask_task, [spec] * len(indices), indices, threads_by_worker=by_worker,
                             default_threads=default, pure=False,
                             key=[f"blocksim-{spec.name}-{i}-{os.getpid()}-{time.time_ns()}" for i in indices])
        for res in _collect_dask(spec, client, cluster, dict(zip(futures, indices)), jobqueue=jobqueue, log=log,
                                 complete_before=complete_before):
            results.append(res)
            if on_result is not None:
                on_result(res)
    finally:
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()  # a SLURMCluster scancels its worker jobs here
            if _in_main_thread():
                signal.signal(signal.SIGTERM, old)
    return results


def _collect_dask(spec: SweepSpec, client, cluster, pending: dict, *, jobqueue: bool, log=print, poll: float = 0.5,
                  complete_before: frozenset = frozenset()):
    """Yield a :class:`TaskResult` per future as it finishes, watching for lost workers.

    While some worker is connected dask itself moves the tasks of a dead worker to the others. When no
    worker is left — for ``dask.lost_worker_timeout`` seconds, or at once for a SLURMCluster none of
    whose worker jobs is queued or running (walltime, preemption) — the unfinished tasks are cancelled
    and reported as failed with a message saying so; the files of finished tasks are not touched. A
    task that dask gives up on (``KilledWorker``) is reported as failed too. A finished task whose
    final file exists is read from its files (``_on_disk``: state, seconds, threads), never gathered from
    its worker ("skipped" when it was complete before the run, as :func:`run_task` says), so a worker that dies after finishing it leaves no gather behind; any other finished
    task's result is gathered, and one that dask lost with its worker is read from its files too.
    """
    lost_since = None
    while pending:
        # the client's event loop keeps each future's status current; polling it (rather than
        # distributed.wait with a timeout) leaves no cancelled waiter behind to log an error
        if not any(f.status in ("finished", "error", "cancelled") for f in pending):
            time.sleep(poll)
        # a "lost" future (its result lived on a worker that died) is not collected here: its result()
        # would wait for a worker to recompute it; what it wrote to disk is read instead (_on_disk)
        for fut in [f for f in pending if f.status in ("finished", "error", "cancelled")]:
            index = pending.pop(fut)
            # a task whose file is final is read from disk, not gathered: its result lives on the worker,
            # and a gather started just before that worker dies waits for a recomputation and, once
            # abandoned, fails inside the client's event loop ("Task exception was never retrieved")
            done = _on_disk(spec, index, "") if fut.status == "finished" else None
            if done is not None and done.state == "done":
                yield done if index not in complete_before else replace(done, state="skipped")
                continue
            try:
                yield fut.result(timeout=30)
            except Exception as exc:  # infrastructure failure; run_task returns its own errors
                yield _on_disk(spec, index, f"dask: {type(exc).__name__}: {' '.join(str(exc).split())}")
        if not pending:
            return
        if _scheduler_workers(client):
            lost_since = None
            continue
        now = time.monotonic()
        lost_since = now if lost_since is None else lost_since
        jobs_gone = False
        if jobqueue and cluster is not None:
            ids = [i for i in (getattr(j, "job_id", None) for j in list(cluster.workers.values())) if i]
            jobs_gone = not any(slurm_job_active(i) for i in ids)
        if jobs_gone or now - lost_since > spec.dask.lost_worker_timeout:
            client.cancel(list(pending))
            finished = [_on_disk(spec, i, "") for i in sorted(pending.values())]
            yield from (r for r in finished if r.state == "done")
            left = [r.index for r in finished if r.state != "done"]
            if not left:
                return
            why = ("every SLURM job of the dask workers has ended" if jobs_gone else
                   f"no dask worker has been connected for {spec.dask.lost_worker_timeout:g} s")
            message = (f"dask executor: {why} (walltime, preemption or a crash?) with {len(left)} task(s) "
                       "unfinished; finished task files are kept; run the sweep again to redo the rest")
            _say(log, message + (f": tasks {array_ranges(left)}" if left else ""))
            for index in left:
                yield TaskResult(index, "failed", str(spec.output_path(spec.tasks[index])), message)
            return


def _on_disk(spec: SweepSpec, index: int, message: str) -> TaskResult:
    """The result of task ``index`` read from its files: "done" when its final file exists (a finished
    task whose result dask lost with its worker), else "failed" with ``message``."""
    from .tasks import task_state

    st = task_state(spec, spec.tasks[index])
    if st.state == "done":
        return TaskResult(index, "done", str(st.path), seconds=float(st.info.get("seconds", 0.0) or 0.0),
                          numba_threads=int(st.info.get("numba_threads", 0) or 0))
    return TaskResult(index, "failed", str(st.path), message)


# ------------------------------------------------------------------------------------------- slurm
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_ALLOWED = re.compile(r"^#\s*blocksim-allowed-partitions:(.*)$", re.MULTILINE)


def default_template() -> Path:
    """``runs/slurm/job_array.sbatch.template`` of the source tree this package was installed from."""
    return Path(__file__).resolve().parents[2] / "runs" / "slurm" / "job_array.sbatch.template"


def _template_path(spec: SweepSpec) -> Path:
    if spec.slurm.template is None:
        path = default_template()
    else:
        path = Path(spec.slurm.template)
        if not path.is_absolute():
            path = (spec.path.parent if spec.path else Path.cwd()) / path
    if not path.is_file():
        raise InputError(f"slurm.template: {str(path)!r} not found (set slurm.template in the sweep file)")
    return path


def array_ranges(indices, throttle: int | None = None) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``"0-2,5,7-8"`` (plus ``"%N"`` for a throttle): SLURM's --array syntax."""
    idx = sorted(set(int(i) for i in indices))
    parts, start = [], None
    for k, i in enumerate(idx):
        if start is None:
            start = i
        if k + 1 == len(idx) or idx[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ",".join(parts) + (f"%{throttle}" if throttle else "")


def sinfo_partitions() -> list[str] | None:
    """Partitions the reachable SLURM controller reports, or None if ``sinfo`` is absent or fails."""
    exe = shutil.which("sinfo")
    conf = os.environ.get("SLURM_CONF")
    if exe is None or (conf and not Path(conf).is_file()):
        return None
    try:
        out = subprocess.run([exe, "-h", "-o", "%R"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return sorted({line.strip().rstrip("*") for line in out.stdout.splitlines() if line.strip()})


def check_partition(spec: SweepSpec, template_text: str) -> str | None:
    """Validate ``slurm.partition``: against ``sinfo`` when a controller answers, else against the
    template's ``# blocksim-allowed-partitions:`` line ("*" allows any). Returns the partition."""
    part = spec.slurm.partition
    if part is None:
        return None
    live = sinfo_partitions()
    if live is not None:
        if part not in live:
            raise InputError(f"slurm.partition: {part!r} is not a partition of this cluster "
                             f"(sinfo: {', '.join(live) or 'none'}){suggest(part, live)}")
        return part
    m = _ALLOWED.search(template_text)
    allowed = m.group(1).split() if m else ["*"]
    if "*" not in allowed and part not in allowed:
        raise InputError(f"slurm.partition: {part!r} is not among the template's allowed partitions "
                         f"({', '.join(allowed)}){suggest(part, allowed)}")
    return part


#: placeholders whose values are paths or commands (checked for control characters and, on #SBATCH
#: lines, for the characters SLURM's script parser cannot quote)
_PATH_VALUES = ("log_dir", "output_dir", "python", "sweep_file")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: inside #SBATCH lines sbatch honours double quotes and backslash escapes and expands %-patterns
#: (%x, %A, ...) in --output; these cannot be passed through safely, so they are refused
_SLURM_UNQUOTABLE = re.compile(r'["\\%]')
_QUOTED_PLACEHOLDER = re.compile(r"""(["'])(\{\{\s*\w+\s*\}\})\1""")


def check_script_value(field: str, value: str, *, sbatch_line: bool = False) -> str:
    """Refuse a value that could change the meaning of the batch script; return it unchanged.

    Control characters (newline, carriage return, tab, NUL, ...) are refused everywhere: a newline in a
    path would start a new shell line. On ``#SBATCH`` lines ``"``, ``\\`` and ``%`` are refused too
    (sbatch parses quotes and escapes there and expands ``%`` patterns in file names).
    """
    m = _CONTROL.search(value)
    if m:
        raise InputError(f"{field}: {value!r} contains the control character {m.group()!r}; paths and names "
                         "that reach the batch script must be printable")
    if sbatch_line:
        m = _SLURM_UNQUOTABLE.search(value)
        if m:
            raise InputError(f"{field}: {value!r} contains {m.group()!r}, which an #SBATCH line cannot quote; "
                             "move the sweep to a directory without '\"', '\\' or '%'")
    return value


def _slurm_quote(value: str) -> str:
    """Double-quote a value for an #SBATCH line (checked by :func:`check_script_value` first)."""
    return f'"{value}"'


def render_sbatch(spec: SweepSpec, indices, *, python: str | None = None) -> str:
    """The sbatch script for ``indices`` (a job array; the array index is the task index).

    Values are never pasted raw: on shell lines every value is ``shlex.quote``-d, on ``#SBATCH`` lines it
    is double-quoted for sbatch's own parser, and control characters (and what sbatch cannot quote) are
    refused with an InputError. A placeholder written inside quotes in a custom template (``"{{x}}"``)
    has those quotes replaced by the renderer's.
    """
    import shlex

    if spec.path is None:
        raise InputError("slurm executor: the sweep must come from a file (run-task reads it on the nodes)")
    template_path = _template_path(spec)
    text = template_path.read_text()
    partition = check_partition(spec, text)
    cpus = spec.slurm.cpus_per_task or spec.numba_threads
    values = {
        "job_name": spec.name,
        "partition": partition or "",
        "time": spec.slurm.time,
        "mem": spec.slurm.mem,
        "cpus_per_task": str(cpus),
        "array": array_ranges(indices, spec.slurm.throttle),
        "log_dir": str(spec.log_dir),
        "output_dir": str(spec.output_dir),
        "signal_grace": str(spec.slurm.signal_grace),
        "numba_threads": str(min(cpus, spec.numba_threads)),
        "hdf5_file_locking": {"auto": "", "true": "TRUE", "false": "FALSE",
                              "best-effort": "BEST_EFFORT"}[spec.hdf5_file_locking],
        "python": python or sys.executable,
        "sweep_file": str(spec.path),
    }
    fields = {"log_dir": "sweep.output_dir", "output_dir": "sweep.output_dir", "python": "python executable",
              "sweep_file": "sweep file path", "job_name": "sweep.name"}
    for key, value in values.items():
        check_script_value(fields.get(key, f"slurm.{key}"), value)
    extra = [check_script_value("slurm.extra", e) for e in spec.slurm.extra]

    lines = []
    for line in text.splitlines():
        if partition is None and "{{partition}}" in line.replace(" ", ""):
            continue  # no partition given: let SLURM use its default
        if "{{hdf5_file_locking}}" in line.replace(" ", "") and not values["hdf5_file_locking"]:
            continue
        if line.strip().replace(" ", "") == "{{extra_directives}}":
            lines.extend(f"#SBATCH {e}" for e in extra)
            continue
        lines.append(line)

    def render_line(line: str) -> str:
        sbatch = line.lstrip().startswith("#SBATCH")

        def sub(m):
            key = m.group(1)
            if key not in values:
                raise InputError(f"slurm.template: unknown placeholder {{{{{key}}}}} in {template_path}"
                                 + suggest(key, values))
            value = values[key]
            if sbatch and key in _PATH_VALUES:
                return _slurm_quote(check_script_value(fields[key], value, sbatch_line=True))
            if sbatch:
                return value  # names, times, sizes, counts: validated by the sweep spec's patterns
            return shlex.quote(value)

        line = _QUOTED_PLACEHOLDER.sub(lambda m: m.group(2), line)
        return _PLACEHOLDER.sub(sub, line)

    return "\n".join(render_line(line) for line in lines) + "\n"


def _slurm_cmd(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise InputError(f"slurm executor: {name} not found on PATH (use --dry-run to only write the script)")
    return exe


def submit_slurm(spec: SweepSpec, indices, *, dry_run: bool = False, log=print) -> tuple[Path | None, str | None]:
    """Write ``OUTPUT_DIR/NAME.sbatch`` for ``indices`` and submit it (unless ``dry_run``).

    Returns the script path (None when nothing is left to run) and the array job id (None for a dry
    run or when nothing is left to run).
    """
    indices = list(indices)
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    script = spec.output_dir / f"{spec.name}.sbatch"
    text = render_sbatch(spec, indices or [0])
    if not indices:
        _say(log, "slurm executor: nothing to submit, every task is done or running")
        return None, None
    script.write_text(text)
    cpus = spec.slurm.cpus_per_task or spec.numba_threads
    _say(log, f"slurm executor: wrote {script} ({len(indices)} array task(s), {cpus} cpu(s) per task, "
              f"NUMBA_NUM_THREADS={min(cpus, spec.numba_threads)})")
    if dry_run:
        return script, None
    out = subprocess.run([_slurm_cmd("sbatch"), "--parsable", str(script)], capture_output=True, text=True,
                         cwd=spec.output_dir, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"sbatch failed ({out.returncode}): {' '.join(out.stderr.split())}")
    job_id = out.stdout.strip().split(";")[0]
    _say(log, f"slurm executor: submitted array job {job_id}")
    return script, job_id


def slurm_job_active(job_id: str) -> bool:
    """True while any task of the (array) job is pending or running according to ``squeue``."""
    out = subprocess.run([_slurm_cmd("squeue"), "-h", "-j", str(job_id), "-o", "%i %T"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:
            return False  # purged from the controller: finished long ago
        raise RuntimeError(f"squeue failed ({out.returncode}): {' '.join(out.stderr.split())}")
    return bool(out.stdout.strip())


def wait_slurm(spec: SweepSpec, job_id: str, *, poll: float = 5.0, timeout: float | None = None,
               on_poll=None) -> None:
    """Block until array job ``job_id`` has left the queue (squeue), calling ``on_poll()`` each round."""
    t0 = time.monotonic()
    while slurm_job_active(job_id):
        if on_poll is not None:
            on_poll()
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise TimeoutError(f"slurm job {job_id} still queued or running after {timeout:.0f} s")
        time.sleep(poll)
