"""Signals between a session and its trainer's process group.

The trainer runs in its own process group (session), so neither the terminal nor the
parent's group reaches it. ``SignalForwarder`` forwards the SIGINT/SIGTERM the session
receives during a run to that group; another stop signal handed to it (SIGHUP: the terminal
was closed) reaches the trainer as SIGTERM, its stop request. ``die_with_parent`` and
``terminate_with_parent`` have Linux send SIGTERM to a process whose parent died, so a
killed parent leaves no orphans.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from informer_nas.errors import signal_name

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def kill_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to the process group ``pgid`` (nothing when the group is gone)."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


@functools.cache
def _linux_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once in the parent (never after fork); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def terminate_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent dies (elsewhere: nothing).

    For worker processes that run sessions (the search benchmark's pool): SIGTERM makes a
    session save its state and stop its trainer, so a killed parent leaves no orphans.
    """
    prctl = _linux_prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGTERM when its parent dies (Linux), else None.

    The child runs in its own session, so neither the terminal nor the parent's group
    reaches it: without this, a ``kill -9`` of ``nas`` would leave the trainer training.
    The death signal is tied to the forking *thread*; ``LocalSubprocessExecutor.run``
    blocks in that thread until the child is gone, so it never fires early. If the parent
    died before the prctl, the child exits at once.
    """
    prctl = _linux_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:  # in the child, between fork and exec: no logging, no locks
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class SignalForwarder:
    """While active (main thread only), SIGINT/SIGTERM go to the child's process group.

    It is entered before the child starts, so a signal arriving in between is not lost:
    it is forwarded as soon as the group exists (``attach``). Its handler takes any signal
    (the CLI's SIGHUP handler calls it): ``received`` is that signal, and the trainer gets
    the same one (it stops on SIGINT, SIGTERM and SIGHUP and names the signal in its
    records).
    """

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def attach(self, pgid: int) -> None:
        """The child's group now exists: forward what arrived before."""
        self.pgid = pgid
        if self.received is not None:
            kill_group(pgid, self.received)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        # A second signal escalates: the user wants it to stop now.
        escalate = self.received is not None
        self.received = signum
        logger.warning("%s received: forwarding it to the trainer", signal_name(signum))
        if self.pgid is not None:
            kill_group(self.pgid, signal.SIGKILL if escalate else signum)

