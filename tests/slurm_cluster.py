"""Start a throw-away single-node SLURM cluster on loopback for the SLURM tests.

Everything lives in one temporary directory: a generated munge key and munged socket, a
``slurm.conf`` with unused ports, the controller's state directory, the node's spool directory and
the logs. ``slurmctld`` and ``slurmd`` run in the foreground (``-D``) as children of this process so
that :meth:`LocalSlurm.stop` can end exactly them (by pid), also when a test fails. Client commands
(``sbatch``, ``squeue``, ``sinfo``, ``scancel``) find the cluster through ``SLURM_CONF``, which
:meth:`LocalSlurm.start` sets in ``os.environ`` (and :meth:`stop` restores).

Requirements: Debian's ``slurm-wlm`` and ``munge`` packages and root (``SlurmUser=root``). Run this file
directly (``python tests/slurm_cluster.py``) to start a cluster, print ``sinfo`` and run one
``sbatch --wrap`` job: the quickest way to debug a configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["LocalSlurm", "SlurmStartError", "slurm_binaries_missing"]

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")

SLURM_CONF = """\
# Single-node test cluster on loopback, written by tests/slurm_cluster.py
ClusterName=blocksimtest
SlurmctldHost=localhost(127.0.0.1)
CommunicationParameters=NoInAddrAny
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/slurmd-%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=60
SlurmctldTimeout=60
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


class SlurmStartError(RuntimeError):
    """The local cluster did not come up; the message includes the tail of the daemon logs."""


def slurm_binaries_missing() -> list[str]:
    """Names of the SLURM/munge programs not found on PATH (nor in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise SlurmStartError(f"{name} not found on PATH")
    return found


class LocalSlurm:
    """A single-node SLURM (slurmctld + slurmd + munged) on 127.0.0.1 in a temporary directory.

    Parameters
    ----------
    partition : name of the only partition (the default one).
    cpus : CPUs of the node ``localhost``.
    memory_mb : RealMemory of the node in MB (jobs may ask for at most this much).
    root : directory for config, state, spool and logs; a fresh temporary one if None.
    """

    def __init__(self, partition: str = "blocksim-test", cpus: int = 2, memory_mb: int = 2000, root=None):
        self.partition = partition
        self.cpus = int(cpus)
        self.memory_mb = int(memory_mb)
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="blocksim-slurm-") if root is None else root)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket.2"
        self._procs: dict[str, subprocess.Popen] = {}
        self._old_env: dict[str, str | None] = {}

    # ----------------------------------------------------------------------------------------- env
    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands: the current one with SLURM_CONF pointing here."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *cmd: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster and return the completed process."""
        proc = subprocess.run(
            [_which(cmd[0]), *cmd[1:]], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise SlurmStartError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # ------------------------------------------------------------------------------------- start
    def start(self, timeout: float = 60.0) -> "LocalSlurm":
        """Start munged, slurmctld and slurmd; return once ``sinfo`` shows the node idle."""
        try:
            self._write_files()
            self._start_munged()
            self._start_daemon("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
            self._wait_for(lambda: self.run("sinfo", "-h", check=False).returncode == 0, timeout, "slurmctld")
            self._start_daemon(
                "slurmd", [_which("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)]
            )
            self._wait_for(lambda: self.node_state() == "idle", timeout, "slurmd (node idle)")
        except BaseException:
            self.stop()
            raise
        for key in ("SLURM_CONF",):
            self._old_env[key] = os.environ.get(key)
        os.environ["SLURM_CONF"] = str(self.conf)
        return self

    def _write_files(self) -> None:
        for sub in ("munge", "state", "spool", "run", "log"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # job scripts and outputs of other users need traversal only
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        self.conf.write_text(
            SLURM_CONF.format(
                root=self.root,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
                munge_socket=self.munge_socket,
                cpus=self.cpus,
                memory_mb=self.memory_mb,
                partition=self.partition,
            )
        )

    def _start_munged(self) -> None:
        m = self.root / "munge"
        cmd = [
            _which("munged"),
            "--foreground",
            "--force",
            f"--socket={self.munge_socket}",
            f"--key-file={m / 'munge.key'}",
            f"--pid-file={m / 'munged.pid'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={m / 'munged.seed'}",
            "--num-threads=2",
        ]
        self._start_daemon("munged", cmd)
        self._wait_for(self.munge_socket.exists, 20.0, "munged")

    def _start_daemon(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "wb")
        self._procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            start_new_session=True,
        )
        log.close()

    def _wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmStartError(f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                                          + self.log_tail())
            try:
                if predicate():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.25)
        raise SlurmStartError(f"timed out after {timeout:.0f} s waiting for {what}:\n" + self.log_tail())

    def node_state(self) -> str:
        """State of node ``localhost`` as ``sinfo`` prints it (``idle``, ``alloc``, ``down*``, ...)."""
        out = self.run("sinfo", "-h", "-N", "-n", "localhost", "-o", "%t", check=False)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every daemon log, for error messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            try:
                text = log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # -------------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Kill the daemons started here (slurmd, slurmctld, munged, by pid) and remove the directory."""
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for key, old in self._old_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._old_env.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover - manual debugging aid
    cluster = LocalSlurm(root=tempfile.mkdtemp(prefix="blocksim-slurm-debug-"))
    cluster._own_root = False
    print("root:", cluster.root)
    try:
        cluster.start()
        print(cluster.run("sinfo").stdout)
        out = cluster.root / "wrap.out"
        job = cluster.run("sbatch", "--parsable", "-o", str(out), "--wrap", "hostname; echo ok").stdout.strip()
        print("job", job)
        for _ in range(60):
            if not cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip():
                break
            time.sleep(0.5)
        print("output:", out.read_text() if out.exists() else "(none)")
    except SlurmStartError as exc:
        print(exc)
    finally:
        cluster.stop()
