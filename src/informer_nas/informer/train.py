"""The training subprocess: ``python -m informer_nas.informer.train --config PATH --run-dir DIR``.

It reads one config file by literal evaluation, trains, and leaves a complete run
directory (``config_used.py``, ``metrics.json``, ``history.json``,
``learning_curve.png``, ``best_model.pt``, ``train.log``), every file written
atomically. Progress goes to stdout as one JSON object per line; the exit code says how
the run ended (``run_files.EXIT_CODES``). SIGTERM, SIGINT or SIGHUP stop it after the current
step (a second signal stops it at once). With ``NAS_PRUNE_FILE`` pointing to a JSON file
``{"epoch_thresholds": {"2": 0.9, ...}}``, a run whose best val MSE so far is above the
threshold of the epoch just finished stops as pruned (Optuna's ``PercentilePruner`` rule,
as ``nas_system/pruning.py`` plans it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from informer_nas.errors import ConfigError
from informer_nas.informer.config import InformerConfig, read_config_literal, validate_config
from informer_nas.informer.run_files import (
    CONFIG_USED,
    EXIT_CODES,
    LEARNING_CURVE,
    METRICS,
    RUN_FILES,
    TRAIN_LOG,
    EpochRecord,
    MemoryLogHandler,
    StateDict,
    TrainStatus,
    atomic_write_text,
    config_used_text,
    write_checkpoint,
    write_history,
    write_json,
    write_learning_curve,
)

if TYPE_CHECKING:
    from informer_nas.informer.training import Trainer

logger = logging.getLogger(__name__)

PRUNE_FILE_ENV = "NAS_PRUNE_FILE"


class EventWriter:
    """Writes one JSON object per line to a stream and flushes it.

    When the stream is gone (the parent died: EPIPE, or the stream was closed), nobody
    is left to use the run: the writer raises SIGTERM in its own process, which the
    ``SignalStopper`` turns into a clean stop with status interrupted, and points the
    stream's file descriptor at ``/dev/null`` so that the exit does not fail on it.
    """

    def __init__(self, stream: TextIO, run_dir: Path) -> None:
        self.stream, self.run_dir = stream, run_dir
        self.is_open = True

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") == "start":
            event = {"event": "start", "run_dir": str(self.run_dir), **event}
        if not self.is_open:
            return
        try:
            self.stream.write(json.dumps(_json_safe(event)) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            self._on_reader_gone(stop=event.get("event") not in ("done", "failed"))

    def _on_reader_gone(self, stop: bool) -> None:
        self.is_open = False
        logger.warning("the parent stopped reading the events (stdout closed)")
        try:  # the unflushed rest must not fail the exit (Python exits 120 on that)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        if stop:  # the run's last event needs no stop: training is over
            signal.raise_signal(signal.SIGTERM)


def _json_safe(event: dict[str, Any]) -> dict[str, Any]:
    return {
        key: None if isinstance(value, float) and not abs(value) < float("inf") else value
        for key, value in event.items()
    }


# SIGHUP is absent on Windows
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP")
                     if hasattr(signal, name))


class SignalStopper:
    """Turns SIGTERM / SIGINT / SIGHUP into a stop request named after the signal (a session
    forwards the one it received: SIGHUP when its terminal was closed); a second signal
    interrupts at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def is_requested(self) -> bool:
        return self.signal_name is not None


class BestSoFarPruner:
    """Prunes when the best val MSE so far is above the threshold of the current epoch.

    The best is the minimum over the finite val MSEs up to and including this epoch; a
    run with none yet is pruned at any threshold. This is Optuna's ``PercentilePruner``
    decision (``nas_system.pruning.prune_decision``); in-process callers may use it as
    ``TrainHooks.epoch_callback``.

    Args:
        thresholds: returns ``{"<epoch>": max_best_val_mse}``, asked after every epoch.
    """

    def __init__(self, thresholds: Callable[[], Mapping[str, float]]) -> None:
        self.thresholds = thresholds
        self.best = math.nan

    def __call__(self, epoch: int, val_mse: float) -> str | None:
        """The prune reason after ``epoch``, or None to go on."""
        if math.isfinite(val_mse):
            self.best = val_mse if math.isnan(self.best) else min(self.best, val_mse)
        threshold = self.thresholds().get(str(epoch))
        if threshold is None or math.isnan(threshold) or self.best <= threshold:
            return None  # (a NaN best, no finite value yet, is above every threshold)
        best = "none finite" if math.isnan(self.best) else f"{self.best:.6g}"
        reason = f"pruned at epoch {epoch}: best val_mse so far {best} > threshold {threshold:.6g}"
        logger.info("%s", reason)
        return reason


def prune_callback_from_env() -> BestSoFarPruner | None:
    """The pruning callback configured by ``NAS_PRUNE_FILE`` (None when unset).

    The file is read after every epoch, so the parent may update the thresholds (the
    executor drops those the best val MSE already meets; harmless under this rule).
    """
    name = os.environ.get(PRUNE_FILE_ENV)
    if not name:
        return None
    path = Path(name)
    return BestSoFarPruner(lambda: _read_thresholds(path))


def _read_thresholds(path: Path) -> dict[str, float]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        thresholds = payload["epoch_thresholds"]
        return {str(key): float(value) for key, value in thresholds.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("ignoring prune file %s (%s); expected {\"epoch_thresholds\": {...}}",
                       path, exc)
        return {}


def load_run_config(path: Path, seed: int | None) -> tuple[InformerConfig, str]:
    """Read and validate the config file, ``seed`` overriding ``training.seed``.

    Returns the config and the file's text. Raises ConfigError.
    """
    raw = read_config_literal(path)
    if seed is not None and isinstance(raw, dict):
        training = raw.setdefault("training", {})
        if isinstance(training, dict):
            training["seed"] = seed
    return validate_config(raw, source=str(path)), path.read_text(encoding="utf-8")


class RunDirectory:
    """Writes a run's files as training proceeds."""

    def __init__(self, path: Path, log: MemoryLogHandler) -> None:
        self.path, self.log = path, log

    def on_epoch_end(self, history: list[EpochRecord], best_state: StateDict | None) -> None:
        if best_state is not None:
            write_checkpoint(self.path, best_state)
        write_history(self.path, history)
        self.log.flush_to(self.path / TRAIN_LOG)

    def finish(self, metrics: dict[str, Any], history: list[EpochRecord] | None) -> None:
        """Write the final files; ``history`` None: nothing was trained (no chart)."""
        write_history(self.path, history or [])
        if history is not None:
            write_learning_curve(self.path / LEARNING_CURVE, history)
        write_json(self.path / METRICS, metrics)
        self.log.flush_to(self.path / TRAIN_LOG)


def failure_metrics(status: TrainStatus, reason: str, seed: int | None) -> dict[str, Any]:
    """``metrics.json`` of a run that never trained."""
    return {
        "status": status, "reason": reason, "val_mse": None, "val_mae": None,
        "test_mse": None, "test_mae": None, "best_epoch": None, "epochs_run": 0,
        "n_params": None, "train_seconds": 0.0, "samples_per_second": None,
        "device": None, "seed": seed,
    }


def run_training(
    config: InformerConfig, run_dir: RunDirectory, emit: EventWriter, stopper: SignalStopper
) -> tuple[dict[str, Any], list[EpochRecord] | None]:
    """Train and return (metrics, history); history None when nothing was trained."""
    from informer_nas.informer.training import Trainer, TrainHooks, is_out_of_memory

    hooks = TrainHooks(emit, prune_callback_from_env(), stopper.is_requested, run_dir.on_epoch_end)
    trainer: Trainer | None = None
    try:
        trainer = Trainer(config, hooks=hooks)
        result = trainer.fit()
        return result.metrics(), result.history
    except ConfigError as exc:  # the data too (DataError): train.log and stderr say why
        status: TrainStatus = "invalid_config"
        reason = str(exc)
        logger.error("invalid config: %s", reason)
    except KeyboardInterrupt:
        status, reason = "interrupted", "stopped by a second signal"
    except Exception as exc:
        status = "oom" if is_out_of_memory(exc) else "crashed"
        lines = str(exc).strip().splitlines() or [""]
        reason = f"{type(exc).__name__}: {lines[0][:300]}"
        logger.error("training failed:\n%s", traceback.format_exc())
    if trainer is None:
        return failure_metrics(status, reason, config.training.seed), None
    return trainer.outcome(status, reason).metrics(), trainer.history


def _setup_logging() -> MemoryLogHandler:
    """INFO and up go to train.log; warnings also to stderr (a parent may not drain it)."""
    memory = MemoryLogHandler()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(memory)
    root.addHandler(stderr)
    return memory


def _parse_args(argv: list[str] | None) -> tuple[Path, Path, int | None]:
    parser = argparse.ArgumentParser(prog="python -m informer_nas.informer.train",
                                     description="Train one Informer config into a run dir.")
    parser.add_argument("--config", required=True, type=Path, help="config file (CONFIG = {...})")
    parser.add_argument("--run-dir", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=None, help="overrides training.seed")
    args = parser.parse_args(argv)
    return args.config, args.run_dir, args.seed


def _prepare_run_dir(path: Path) -> str | None:
    """Create the run directory, hold it for this process, and empty it of an earlier
    training's files (a checkpoint or chart left beside new metrics would belong to another
    run). Returns what is wrong with it, or None. A second training into the same directory
    is refused: the two would write one directory's files in turns."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not _hold(path):
            return (f"run directory {path} is in use by another training; wait for it to "
                    "finish, or pass --run-dir a new directory")
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (f"run directory {path} cannot be used ({reason}); pass --run-dir a new or "
                "writable directory")
    return None


_HELD: list[int] = []  # descriptors of the directories this process trains into


def _hold(directory: Path) -> bool:
    """Take an exclusive advisory lock on ``directory`` until the process exits (False: some
    other process holds it). Where locks are not supported, True."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return True
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    except OSError:  # a file system without locks
        os.close(descriptor)
        return True
    _HELD.append(descriptor)
    return True


def main(argv: list[str] | None = None) -> int:
    """Run one training; return the exit code."""
    config_path, run_path, seed = _parse_args(argv)
    problem = _prepare_run_dir(run_path)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_CODES["invalid_config"]
    run_dir = RunDirectory(run_path, _setup_logging())
    emit = EventWriter(sys.stdout, run_path)
    stopper = SignalStopper()
    stopper.install()
    try:
        config, source = load_run_config(config_path, seed)
    except ConfigError as exc:
        logger.error("invalid config: %s", exc)
        metrics, history = failure_metrics("invalid_config", str(exc), seed), None
    else:
        atomic_write_text(run_path / CONFIG_USED, config_used_text(source, config))
        metrics, history = run_training(config, run_dir, emit, stopper)
    if stopper.signal_name and metrics["status"] == "interrupted":
        metrics["reason"] = f"stopped by {stopper.signal_name}"
    run_dir.finish(metrics, history)
    if metrics["status"] == "ok":
        emit({"event": "done", **metrics})
    else:
        emit({"event": "failed", "status": metrics["status"], "reason": metrics["reason"]})
    return EXIT_CODES[metrics["status"]]


if __name__ == "__main__":
    sys.exit(main())
