"""The exception tree shared by every layer.

It lives at the package root (below ``informer``) so that the trainer, the NAS system,
the tools and the CLI raise and catch the same classes. Every message says what
happened, the offending value, and what to do.
"""

from __future__ import annotations

import signal


class NasError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""


class ConfigError(NasError):
    """A config file, a config change or a data setting is invalid."""


class DataError(ConfigError):
    """A data file cannot be used for the requested windows."""


class LaunchError(NasError):
    """A training run could not be launched or did not finish."""


class GateRejected(NasError):
    """A candidate was rejected by a decisive rule."""


class HistoryCorrupt(NasError):
    """agent_state.json, a trace or a run directory is unreadable or inconsistent."""


class WorkspaceLocked(NasError):
    """Another live process holds the workspace lock."""


class ReplayDivergence(NasError):
    """A replayed session asked a model something other than what was recorded."""


class EnvironmentFailure(NasError):
    """The machine cannot serve the session (a run directory cannot be written, the disk
    is full): the session stops, since no candidate is at fault; ``nas resume`` continues."""


class StopSignal(KeyboardInterrupt):
    """A signal asked the process to stop (SIGTERM: a service manager; SIGHUP: the terminal
    was closed). It stops a command the way Ctrl+C does; the records name the signal."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        super().__init__(message or f"stopped by {signal_name(signum)}")
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal_name(self.signum)


def signal_name(signum: int) -> str:
    """``SIGHUP`` for 1 (the number itself when the platform does not know it)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def interruption_reason(error: BaseException) -> str:
    """What stopped a command: ``stopped by SIGHUP`` for a signal, else (Ctrl+C: SIGINT)
    ``interrupted by the user``."""
    if isinstance(error, StopSignal) and error.signum != signal.SIGINT:
        return f"stopped by {error.signal_name}"
    return "interrupted by the user"
