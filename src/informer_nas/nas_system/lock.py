"""The workspace lock (``.nas.lock``): one live process per workspace.

``fcntl.flock`` makes taking the lock atomic and the kernel frees it when its holder dies,
so a lock left by a dead process is simply taken over. The pid, host and start time
written into the file name the holder in the error message. Re-exported by ``state.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import logging
import os
import shlex
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from informer_nas.errors import NasError, WorkspaceLocked
from informer_nas.nas_system.paths import WorkspacePaths

logger = logging.getLogger(__name__)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_stamp() -> str:
    """The current UTC time for a file name (``20261127T180501Z``): a kept copy's suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) the workspace lock."""

    pid: int
    hostname: str
    started_at: str

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "hostname": self.hostname,
                           "started_at": self.started_at})


# Workspaces whose lock this thread (or task) holds with ``share=True``: root -> holder.
_SHARED: contextvars.ContextVar[dict[str, LockHolder] | None] = contextvars.ContextVar(
    "informer_nas_shared_locks", default=None)


@contextlib.contextmanager
def workspace_lock(paths: WorkspacePaths, share: bool = False) -> Iterator[LockHolder]:
    """Hold the workspace lock (``.nas.lock``) for the duration of the block.

    ``fcntl.flock`` makes taking it atomic and frees it when its holder dies, so a lock
    left by a dead process is taken over; the pid, host and start time written in the
    file name the holder for the error message.

    Args:
        paths: the workspace's paths.
        share: let ``workspace_lock`` calls nested in this block, in the same thread or
            task and on the same workspace, reuse this lock instead of being refused (the
            API takes the lock before it writes anything, then calls ``run_session``).

    Raises:
        WorkspaceLocked: another live process holds it (names its pid and what to do).
    """
    shared = _SHARED.get() or {}
    key = str(paths.root)
    if key in shared:
        yield shared[key]
        return
    with _flock(paths) as holder:
        if not share:
            yield holder
            return
        token = _SHARED.set({**shared, key: holder})
        try:
            yield holder
        finally:
            _SHARED.reset(token)


@contextlib.contextmanager
def _flock(paths: WorkspacePaths) -> Iterator[LockHolder]:
    """Take the ``flock`` and write the holder (see ``workspace_lock``)."""
    _refuse_directory(paths)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceLocked(_locked_message(paths, _read_holder(fd))) from None
        previous = _read_holder(fd)
        if previous is not None and previous.pid != os.getpid():
            logger.warning("taking over the lock of %s left by dead pid %d",
                           paths.root, previous.pid)
        holder = LockHolder(os.getpid(), socket.gethostname(), now_iso())
        _write_holder(fd, holder.to_json())
        try:
            yield holder
        finally:
            _write_holder(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_status(paths: WorkspacePaths) -> tuple[LockHolder | None, bool]:
    """Who last wrote the lock file, and whether a live process holds the lock now.

    Read-only: a missing lock file is not created. A holder named in a lock that nobody
    holds is a process that died without releasing it (harmless: it is taken over).
    """
    _refuse_directory(paths)
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except FileNotFoundError:
        return None, False
    try:
        holder = _read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder, True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return holder, False
    finally:
        os.close(fd)


def _refuse_directory(paths: WorkspacePaths) -> None:
    if paths.lock.is_dir():
        lock = shlex.quote(str(paths.lock))
        raise NasError(f"{paths.lock} is a directory, not the workspace's lock file; when no "
                       f"nas process uses the workspace, move it away: mv {lock} {lock}.bak")


def _read_holder(fd: int) -> LockHolder | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return LockHolder(int(data["pid"]), str(data["hostname"]), str(data["started_at"]))
    except (ValueError, TypeError, KeyError):
        return None


def _write_holder(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8"), 0)
    os.fsync(fd)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _locked_message(paths: WorkspacePaths, holder: LockHolder | None) -> str:
    where = f"workspace {paths.root} is in use"
    if holder is None:
        return f"{where} by another process (lock {paths.lock}); wait for it to finish"
    who = f"pid {holder.pid} on {holder.hostname} since {holder.started_at}"
    if holder.pid == os.getpid():
        return f"{where} by this process ({who}); do not open it twice"
    if holder.hostname == socket.gethostname() and not _is_alive(holder.pid):
        return (f"{where}: {who} died but a child process still holds {paths.lock}; "
                f"stop it (`fuser {paths.lock}` shows it) and retry")
    return f"{where} by {who}; wait for it to finish or stop it (`kill {holder.pid}`)"
