"""The local subprocess executor: the trainer as a child process of the session.

``LocalSubprocessExecutor`` starts ``python -m informer_nas.informer.train`` in its own
process group (session), streams its JSON-lines stdout to a callback, writes its stderr
to ``run_dir/stderr.log``, kills the whole group on timeout, and forwards SIGINT/SIGTERM
received meanwhile to the group (``process_signals.SignalForwarder``), raising
``RunInterrupted`` (a KeyboardInterrupt that carries the outcome) once the child has exited.
SIGHUP handed to the forwarder (the terminal was closed) reaches the trainer as SIGHUP,
which it also takes as a stop request and names in the run's records.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from informer_nas.errors import LaunchError
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.executor import (
    EventCallback,
    RunInterrupted,
    TrainingExecutor,
    TrainOutcome,
    read_metrics,
)
from informer_nas.nas_system.process_signals import (
    SignalForwarder,
    die_with_parent,
    kill_group,
)
from informer_nas.nas_system.pruning import PruneFileRefresher
from informer_nas.nas_system.records import RunStatus, signal_death_reason, status_from_exit_code

logger = logging.getLogger(__name__)

PRUNE_ENV = "NAS_PRUNE_FILE"
PRUNE_FILE = "prune_thresholds.json"
STDERR_FILE = "stderr.log"
TRAINER_ARGS: tuple[str, ...] = ("-m", "informer_nas.informer.train")


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
            with SignalForwarder() as forwarder:
                process = self._start(command, stderr, env)
                try:
                    forwarder.attach(process.pid)
                    watch = self._wait(process, started, timeout_s, on_event, forwarder)
                except BaseException:
                    kill_group(process.pid, signal.SIGKILL)  # never leave an orphan trainer
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
                                    preexec_fn=die_with_parent())
        except OSError as exc:
            raise LaunchError(f"cannot start the trainer {command[:3]}: {exc}; "
                              "check the Python environment") from exc

    def _wait(self, process: subprocess.Popen[bytes], started: float, timeout_s: float | None,
              on_event: EventCallback | None, forwarder: SignalForwarder) -> _Watch:
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
            self._drain(events, watch, on_event)
            self._enforce(process, watch)
        process.stdout.close()
        kill_group(process.pid, signal.SIGKILL)  # stragglers (grandchildren) of the run
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
            kill_group(process.pid, signal.SIGTERM)
        if watch.kill_at is not None and now >= watch.kill_at:
            kill_group(process.pid, signal.SIGKILL)
            watch.kill_at = None
        if process.poll() is not None and not watch.is_eof:
            # The child is gone but a grandchild still holds stdout open.
            watch.exited_at = watch.exited_at or now
            if now - watch.exited_at > 1.0:
                kill_group(process.pid, signal.SIGKILL)

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
