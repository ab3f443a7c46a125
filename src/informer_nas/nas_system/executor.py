"""Training executors: where a trial runs (today a local subprocess; later a Ray task).

A trial's inputs are a config file, a run directory and a seed; its outputs are the files
the trainer writes into the run directory plus a ``TrainOutcome``. Nothing above this
module assumes the trainer runs on this machine.

``LocalSubprocessExecutor`` starts ``python -m informer_nas.informer.train`` in its own
process group (session), streams its JSON-lines stdout to a callback, writes its stderr
to ``run_dir/stderr.log``, kills the whole group on timeout, and forwards SIGINT/SIGTERM
received meanwhile to the group, raising ``RunInterrupted`` (a KeyboardInterrupt that
carries the outcome) once the child has exited. Another stop signal handed to the forwarder
(SIGHUP: the terminal was closed) reaches the trainer as SIGTERM, its stop request; the
run's records name the signal the session received.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from informer_nas.errors import LaunchError, StopSignal, signal_name
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.pruning import PruneFileRefresher
from informer_nas.nas_system.records import RunStatus, signal_death_reason, status_from_exit_code

logger = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]
PRUNE_ENV = "NAS_PRUNE_FILE"
PRUNE_FILE = "prune_thresholds.json"
STDERR_FILE = "stderr.log"
TRAINER_ARGS: tuple[str, ...] = ("-m", "informer_nas.informer.train")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class TrainOutcome:
    """What became of one training run.

    Args:
        status: the run status (from the exit code, or timeout).
        reason: why, for any status but ok (empty when ok).
        metrics: the content of ``metrics.json`` ({} when missing).
        seconds: wall time of the run.
        exit_code: the process exit status (None when no process ran).
    """

    status: RunStatus
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    exit_code: int | None = None


class RunInterrupted(StopSignal):
    """SIGINT/SIGTERM (or SIGHUP) reached the parent during a run; the child has exited.

    It is a KeyboardInterrupt so that an unprepared caller stops; ``launch_training``
    catches it, records ``outcome`` and re-raises it.
    """

    def __init__(self, outcome: TrainOutcome, signum: int) -> None:
        super().__init__(signum, f"training interrupted by {signal_name(signum)}")
        self.outcome = outcome


class TrainingExecutor(ABC):
    """Runs one trial. A new backend (Ray, a remote queue) is one subclass."""

    #: Whether ``run`` trains on the config's data file. A replay of recorded results does
    #: not, so the session skips its data-file checks (the file may be absent where a trace
    #: is replayed).
    reads_data: bool = True

    @abstractmethod
    def run(
        self,
        config_path: Path,
        run_dir: Path,
        seed: int,
        timeout_s: float | None,
        on_event: EventCallback | None = None,
        prune_thresholds: Mapping[int, float] | None = None,
    ) -> TrainOutcome:
        """Train ``config_path`` with ``seed`` into ``run_dir`` and report the outcome.

        Args:
            config_path: the config file (read by literal evaluation by the trainer).
            run_dir: the run directory (created if missing).
            seed: the training seed (overrides training.seed).
            timeout_s: wall-clock limit; None for none.
            on_event: receives each progress event (a dict with an ``event`` key).
            prune_thresholds: epoch (1-based) -> max val_mse: the run stops with status
                pruned at the first such epoch where its best val_mse so far is above
                the threshold (``nas_system/pruning.py``).
        """


@dataclass(frozen=True)
class TrainRequest:
    """The arguments of one ``TrainingExecutor.run`` call, for ``CallableExecutor``."""

    config_path: Path
    run_dir: Path
    seed: int
    timeout_s: float | None
    on_event: EventCallback | None = None
    prune_thresholds: Mapping[int, float] | None = None


class CallableExecutor(TrainingExecutor):
    """Wraps a Python function: stubs for tests and benchmarks, recorded outcomes for replay."""

    def __init__(self, function: Callable[[TrainRequest], TrainOutcome]) -> None:
        self.function = function
        self.requests: list[TrainRequest] = []

    def run(self, config_path: Path, run_dir: Path, seed: int, timeout_s: float | None,
            on_event: EventCallback | None = None,
            prune_thresholds: Mapping[int, float] | None = None) -> TrainOutcome:
        request = TrainRequest(config_path, run_dir, seed, timeout_s, on_event, prune_thresholds)
        self.requests.append(request)
        return self.function(request)


def read_metrics(run_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """Read ``run_dir/metrics.json``: (metrics, "") or (None, why it is unusable)."""
    path = run_dir / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path} missing"
    except (OSError, ValueError) as exc:
        return None, f"{path} unreadable ({exc})"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    return data, ""


def write_prune_file(run_dir: Path, thresholds: Mapping[int, float]) -> Path:
    """Write ``{"epoch_thresholds": {"<epoch>": max_val_mse}}`` for the trainer.

    The trainer rereads the file after each epoch, so it is replaced atomically.
    """
    path = run_dir / PRUNE_FILE
    by_epoch = {str(epoch): float(value) for epoch, value in sorted(thresholds.items())}
    atomic_write_text(path, json.dumps({"epoch_thresholds": by_epoch}))
    return path


def _refreshing(on_event: EventCallback | None, run_dir: Path,
                thresholds: Mapping[int, float]) -> EventCallback:
    """``on_event`` that also keeps the prune file on the best-so-far rule."""
    refresher = PruneFileRefresher(thresholds, lambda left: write_prune_file(run_dir, left))

    def forward(event: dict[str, Any]) -> None:
        refresher.on_event(event)
        if on_event is not None:
            on_event(event)

    return forward


def _stderr_tail(path: Path, limit: int = 300) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][-limit:] if lines else ""


def _kill_group(pgid: int, signum: int) -> None:
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


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGTERM when its parent dies (Linux), else None.

    The child runs in its own session, so neither the terminal nor the parent's group
    reaches it: without this, a ``kill -9`` of ``nas`` would leave the trainer training.
    The death signal is tied to the forking *thread*; ``run`` blocks in that thread until
    the child is gone, so it never fires early. If the parent died before the prctl, the
    child exits at once.
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


# The signals the trainer takes as a stop request; any other one handed to the forwarder
# (the CLI hands it SIGHUP) reaches the trainer as SIGTERM.
TRAINER_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _SignalForwarder:
    """While active (main thread only), SIGINT/SIGTERM go to the child's process group.

    It is entered before the child starts, so a signal arriving in between is not lost:
    it is forwarded as soon as the group exists (``attach``). Its handler takes any signal
    (the CLI's SIGHUP handler calls it): ``received`` is that signal, the trainer gets it as
    SIGTERM.
    """

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
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
            _kill_group(pgid, _trainer_signal(self.received))

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        # A second signal escalates: the user wants it to stop now.
        escalate = self.received is not None
        self.received = signum
        sent = _trainer_signal(signum)
        logger.warning("%s received: forwarding %s to the trainer", signal_name(signum),
                       "it" if sent == signum else signal_name(sent))
        if self.pgid is not None:
            _kill_group(self.pgid, signal.SIGKILL if escalate else sent)


def _trainer_signal(signum: int) -> int:
    """The signal the trainer gets for ``signum``: the trainer stops on SIGINT/SIGTERM."""
    return signum if signum in TRAINER_STOP_SIGNALS else signal.SIGTERM


def _read_stdout(stream: IO[bytes], events: queue.Queue[dict[str, Any] | None]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            events.put(event)
        else:
            logger.info("trainer: %s", line)
    events.put(None)  # end of stream


@dataclass
class _Watch:
    """The state of one wait loop: deadlines and what happened."""

    deadline: float | None
    grace_s: float
    timeout_s: float | None = None
    timed_out: bool = False
    kill_at: float | None = None
    exited_at: float | None = None
    is_eof: bool = False
    last_failure: str = ""
    forwarded: bool = False  # the session signalled the child (the user's SIGINT/SIGTERM)
    # a signal the session received that the trainer got as SIGTERM (SIGHUP): the records
    # of the interrupted run name it instead of the trainer's "stopped by SIGTERM"
    relayed: str | None = None

    @property
    def relayed_reason(self) -> str:
        return f"stopped by {self.relayed}"

    @property
    def timeout_reason(self) -> str:
        """What a timed-out run's records and display say."""
        return f"exceeded the timeout of {self.timeout_s:g} s; the process group was killed"


class LocalSubprocessExecutor(TrainingExecutor):
    """Runs the trainer as a local subprocess in its own process group.

    Args:
        python_args: what follows ``sys.executable`` (default: the trainer module); tests
            pass a fake trainer script. ``--config``, ``--run-dir`` and ``--seed`` follow.
        grace_s: after SIGTERM (timeout or forwarded signal), seconds before SIGKILL.
        poll_s: how often the wait loop checks the child and the clock.
    """

    def __init__(self, python_args: Sequence[str] = TRAINER_ARGS, grace_s: float = 10.0,
                 poll_s: float = 0.05) -> None:
        self.python_args = tuple(python_args)
        self.grace_s = grace_s
        self.poll_s = poll_s

    def run(self, config_path: Path, run_dir: Path, seed: int, timeout_s: float | None,
            on_event: EventCallback | None = None,
            prune_thresholds: Mapping[int, float] | None = None) -> TrainOutcome:
        run_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, *self.python_args, "--config", str(config_path),
                   "--run-dir", str(run_dir), "--seed", str(seed)]
        env = self._child_env(run_dir, prune_thresholds)
        if prune_thresholds:
            on_event = _refreshing(on_event, run_dir, prune_thresholds)
        started = time.monotonic()
        with open(run_dir / STDERR_FILE, "wb") as stderr:
            with _SignalForwarder() as forwarder:
                process = self._start(command, stderr, env)
                try:
                    forwarder.attach(process.pid)
                    watch = self._wait(process, started, timeout_s, on_event, forwarder)
                except BaseException:
                    _kill_group(process.pid, signal.SIGKILL)  # never leave an orphan trainer
                    process.wait()
                    raise
        watch.forwarded = forwarder.received is not None
        outcome = self._outcome(process.returncode, run_dir, watch, time.monotonic() - started)
        if forwarder.received is not None:
            raise RunInterrupted(outcome, forwarder.received)
        return outcome

    def _child_env(self, run_dir: Path,
                   prune_thresholds: Mapping[int, float] | None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(PRUNE_ENV, None)
        if prune_thresholds:
            env[PRUNE_ENV] = str(write_prune_file(run_dir, prune_thresholds))
        return env

    @staticmethod
    def _start(command: list[str], stderr: IO[bytes],
               env: dict[str, str]) -> subprocess.Popen[bytes]:
        try:
            # preexec_fn is unsafe with threads holding locks at fork; it only makes one
            # pre-resolved libc call. The stdout reader thread starts after Popen.
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=stderr, env=env, start_new_session=True,
                                    preexec_fn=_die_with_parent())
        except OSError as exc:
            raise LaunchError(f"cannot start the trainer {command[:3]}: {exc}; "
                              "check the Python environment") from exc

    def _wait(self, process: subprocess.Popen[bytes], started: float, timeout_s: float | None,
              on_event: EventCallback | None, forwarder: _SignalForwarder) -> _Watch:
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert process.stdout is not None
        reader = threading.Thread(target=_read_stdout, args=(process.stdout, events),
                                  daemon=True, name=f"trainer-stdout-{process.pid}")
        reader.start()
        deadline = None if timeout_s is None else started + timeout_s
        watch = _Watch(deadline, self.grace_s, timeout_s)
        seen_signal: int | None = None
        while not (watch.is_eof and process.poll() is not None):
            if forwarder.received is not None and seen_signal is None:
                seen_signal = forwarder.received
                watch.kill_at = watch.kill_at or time.monotonic() + self.grace_s
                if _trainer_signal(seen_signal) != seen_signal:
                    watch.relayed = signal_name(seen_signal)
            self._drain(events, watch, on_event)
            self._enforce(process, watch)
        process.stdout.close()
        _kill_group(process.pid, signal.SIGKILL)  # stragglers (grandchildren) of the run
        return watch

    def _drain(self, events: queue.Queue[dict[str, Any] | None], watch: _Watch,
               on_event: EventCallback | None) -> None:
        try:
            event = events.get(timeout=self.poll_s)
        except queue.Empty:
            return
        while True:
            if event is None:
                watch.is_eof = True
            else:
                if event.get("event") == "failed":
                    if watch.timed_out:  # the trainer calls our SIGTERM "interrupted"
                        event = {**event, "status": RunStatus.TIMEOUT.value,
                                 "reason": watch.timeout_reason}
                    elif watch.relayed and event.get("status") == RunStatus.INTERRUPTED.value:
                        event = {**event, "reason": watch.relayed_reason}
                    watch.last_failure = str(event.get("reason", ""))
                if on_event is not None:
                    on_event(event)
            try:
                event = events.get_nowait()
            except queue.Empty:
                return

    def _enforce(self, process: subprocess.Popen[bytes], watch: _Watch) -> None:
        """Apply the timeout, the SIGKILL grace period and the straggler cleanup."""
        now = time.monotonic()
        if watch.deadline is not None and now >= watch.deadline and not watch.timed_out:
            watch.timed_out = True
            watch.kill_at = now + watch.grace_s
            logger.warning("trainer %d timed out: terminating its process group", process.pid)
            _kill_group(process.pid, signal.SIGTERM)
        if watch.kill_at is not None and now >= watch.kill_at:
            _kill_group(process.pid, signal.SIGKILL)
            watch.kill_at = None
        if process.poll() is not None and not watch.is_eof:
            # The child is gone but a grandchild still holds stdout open.
            watch.exited_at = watch.exited_at or now
            if now - watch.exited_at > 1.0:
                _kill_group(process.pid, signal.SIGKILL)

    @staticmethod
    def _outcome(code: int | None, run_dir: Path, watch: _Watch, seconds: float) -> TrainOutcome:
        assert code is not None
        metrics, problem = read_metrics(run_dir)
        if watch.timed_out:
            reason = watch.timeout_reason
            if metrics is not None:  # the trainer wrote "interrupted" on the SIGTERM
                metrics = {**metrics, "status": RunStatus.TIMEOUT.value, "reason": reason}
                atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
            return TrainOutcome(RunStatus.TIMEOUT, reason, metrics or {}, seconds, code)
        status = status_from_exit_code(code, forwarded=watch.forwarded)
        if watch.relayed and status is RunStatus.INTERRUPTED:
            if metrics is not None:  # the trainer says "stopped by SIGTERM", which it got
                metrics = {**metrics, "reason": watch.relayed_reason}
                atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
            return TrainOutcome(status, watch.relayed_reason, metrics or {}, seconds, code)
        if status is RunStatus.OK and metrics is None:
            return TrainOutcome(RunStatus.CRASHED, f"exit 0 but {problem}", {}, seconds, code)
        reason = "" if status is RunStatus.OK else _failure_reason(code, metrics, watch, run_dir)
        return TrainOutcome(status, reason, metrics or {}, seconds, code)


def _failure_reason(code: int, metrics: dict[str, Any] | None, watch: _Watch,
                    run_dir: Path) -> str:
    if code < 0 and not watch.forwarded:  # a signal nobody in the session sent
        return signal_death_reason(code)
    if metrics and metrics.get("reason"):
        return str(metrics["reason"])
    if watch.last_failure:
        return watch.last_failure
    if code < 0:
        return f"killed by signal {-code}"
    tail = _stderr_tail(run_dir / STDERR_FILE)
    return f"exit code {code}" + (f": {tail}" if tail else "")
