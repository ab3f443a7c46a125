"""Training executors: where a trial runs (today a local subprocess; later a Ray task).

A trial's inputs are a config file, a run directory and a seed; its outputs are the files
the trainer writes into the run directory plus a ``TrainOutcome``. Nothing above this
module assumes the trainer runs on this machine.

This module holds the interface and its records: ``TrainingExecutor`` (one subclass per
backend), ``TrainOutcome``, ``RunInterrupted``, ``CallableExecutor`` (a Python function as
the backend) and ``read_metrics``. The local subprocess backend is
``local_executor.LocalSubprocessExecutor``; its signal handling is in
``process_signals.py``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from informer_nas.errors import StopSignal, signal_name
from informer_nas.nas_system.records import RunStatus

EventCallback = Callable[[dict[str, Any]], None]


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

