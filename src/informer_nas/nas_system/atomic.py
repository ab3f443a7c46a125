"""Atomic file writes: a temp file in the same directory, fsync, ``os.replace``, fsync the dir.

A reader (or a process restarted after ``kill -9``) sees either the old file or the new
one, never a torn mix. Used by every layer above ``informer`` (the trainer has its own).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_DEFAULT_MODE = 0o644


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename or an unlink) to disk.

    Args:
        directory: the directory whose entries changed.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: Path, data: bytes, verify: Callable[[Path], None] | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Args:
        path: the destination; its directory must exist.
        data: the new content.
        verify: called with the fsynced temp file before the rename; if it raises, the
            temp file is removed, ``path`` is untouched and the exception propagates.
    """
    path = Path(path)
    mode = _existing_mode(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if verify is not None:
            verify(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_directory(path.parent)


def atomic_write_text(
    path: Path, text: str, verify: Callable[[Path], None] | None = None
) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically (see ``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("utf-8"), verify=verify)


def _existing_mode(path: Path) -> int:
    # Keep a user's permissions on rewrite; mkstemp would otherwise leave 0600.
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return _DEFAULT_MODE
