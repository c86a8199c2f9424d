"""An exclusive lock on a run's output path: ``OUT.h5.lock`` holding the owner's pid and host.

Two runs writing one output would overwrite each other's ``OUT.h5.part``. :class:`OutputLock` creates
``OUT.h5.lock`` with ``O_CREAT | O_EXCL`` (atomic on local filesystems and on NFS v3+/Lustre, where
HDF5's own locks are often disabled) and writes ``{"pid", "host", "started", "output"}`` into it.
A second run finds the file and is refused with a message naming the first. A lock left by a run that
was killed (SIGKILL, node crash) is taken over when its owner is known to be gone: same host and the
pid no longer exists. A lock from another host cannot be checked from here; the refusal says which
file to delete once that run is known to be dead. The lock is removed when the run ends (normally, by
an error, or by SIGTERM/Ctrl-C).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import InputError

__all__ = ["OutputLock", "lock_path", "holder"]


def lock_path(output) -> Path:
    """``OUT.h5`` → ``OUT.h5.lock``."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


def holder(output) -> dict | None:
    """The recorded owner of ``output``'s lock (``{}`` when unreadable), or None when there is no lock."""
    path = lock_path(output)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs on this host (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_stale(info: dict) -> bool:
    """The owner is known to be gone: recorded on this host, and its pid no longer runs."""
    pid = info.get("pid")
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0 and not _pid_alive(pid)


def _describe(info: dict) -> str:
    if not info:
        return "an unknown process (the lock file is empty or unreadable)"
    return f"pid {info.get('pid')} on host {info.get('host')!r}, started {info.get('started', '?')}"


class OutputLock:
    """Context manager holding the exclusive lock of ``output`` (see the module docstring)."""

    def __init__(self, output):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "output": str(self.output)}
        self.held = False

    def check(self) -> None:
        """Refuse (InputError) when a live run holds the lock; nothing is created."""
        info = holder(self.output)
        if info is not None and not _is_stale(info):
            raise InputError(
                f"output = {str(self.output)!r}: in use by another blocksim run ({_describe(info)}; lock "
                f"{str(self.path)!r}); wait for it to finish or choose another output. If that run is "
                f"known to be dead, delete {str(self.path)!r}"
            )

    def acquire(self) -> "OutputLock":
        """Create the lock file (pid, host) or raise InputError naming the live writer that holds it."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.check()  # raises while the owner may be alive
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            except OSError as exc:
                raise InputError(f"output = {str(self.output)!r}: cannot create the lock file "
                                 f"{str(self.path)!r} ({exc.strerror or exc})") from None
            try:
                os.write(fd, json.dumps(self.info).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.held = True
            return self
        self.check()
        raise InputError(f"output = {str(self.output)!r}: could not take the lock {str(self.path)!r}")

    def release(self) -> None:
        """Remove the lock file if it is still this process's."""
        if not self.held:
            return
        self.held = False
        info = holder(self.output)
        if info and info.get("pid") == self.info["pid"] and info.get("host") == self.info["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
