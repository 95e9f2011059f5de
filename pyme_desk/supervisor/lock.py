"""One cluster per data root: an operating-system lock on a per-user file keyed by the root.

The lock file lives in the per-user state directory, never inside the served tree.  The lock
is an OS file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), so it goes away
with the process that held it: a supervisor killed with ``kill -9`` leaves a file behind but
no lock, and the next one simply takes it over.  The file holds the holder's PID and root as
JSON so a refused supervisor can say who holds it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from pyme_desk.errors import UsageError

#: Windows locks a byte range; we lock one byte far past the JSON so the JSON stays readable.
_WINDOWS_LOCK_OFFSET = 1 << 20


def default_state_dir() -> Path:
    """Per-user directory for supervisor state (locks, port files)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "pyme-desk"


def cluster_key(root: Path) -> str:
    """A short stable name for a data root (its resolved path, hashed)."""
    real = os.path.normcase(os.path.realpath(root))
    return hashlib.sha256(real.encode("utf-8")).hexdigest()[:16]


class RootLock:
    """Held while a supervisor serves ``root``; :meth:`acquire` raises UsageError when taken."""

    def __init__(self, root: Path, state_dir: Path | None = None) -> None:
        self.root = Path(root)
        directory = Path(state_dir) if state_dir else default_state_dir()
        self.path = directory / "clusters" / f"{cluster_key(root)}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise UsageError(f"cannot create the cluster lock file {self.path}: {e.strerror or e}") from None
        if not _try_lock(fd):
            holder = self.holder()
            os.close(fd)
            who = f"process {holder['pid']}" if holder and holder.get("pid") else "another process"
            raise UsageError(f"a cluster for {self.root} is already running ({who} holds {self.path}); "
                             "stop it first, or choose another data root")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "root": str(self.root), "since": time.time()}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        _unlock(self._fd)
        os.close(self._fd)
        self._fd = None

    def holder(self) -> dict | None:
        """The JSON the current holder wrote, or None."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "RootLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        os.lseek(fd, 0, os.SEEK_SET)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
