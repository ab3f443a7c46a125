"""Pruning (issue 7): stop a trial early when it is clearly worse than earlier trials.

The rule is Optuna's ``PercentilePruner`` (``MedianPruner`` is its 50th percentile) on the
val MSE reported after each epoch, minimising, with step = epoch - 1:

- the *reference* at epoch e is the percentile (numpy's linear interpolation, NaN
  ignored) of the val MSE **at epoch e** of the earlier runs that finished ok and reached
  epoch e; it is undefined while fewer than ``n_startup_runs`` such runs exist;
- a run is pruned at the first epoch e > ``n_warmup_epochs`` at which its **best** val
  MSE so far (the minimum over epochs 1..e) is above the reference at e.

That is exactly ``PercentilePruner(p, n_startup_trials=n, n_warmup_steps=w,
n_min_trials=max(n, 1))`` with ``trial.report(val_mse, epoch - 1)`` (tested against
Optuna). The references are computed before a launch from the runs' ``history.json``
and handed to the executor as ``{epoch: threshold}``; the executor guarantees the
best-so-far comparison (``PruneFileRefresher``). Confirmation-seed runs are never pruned
and never count as references (they live in ``seed_<n>/``, not in the run records).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from informer_nas.errors import ConfigError
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunRecord, RunStatus

PruneKind = Literal["median", "percentile", "none"]
PRUNE_KINDS: tuple[str, ...] = ("median", "percentile", "none")
HISTORY_FILE = "history.json"
_CACHE_LIMIT = 8192


@dataclass(frozen=True)
class PruningSettings:
    """How hopeless trials are stopped.

    Args:
        kind: ``median`` (default), ``percentile`` (uses ``percentile``) or ``none``.
        percentile: for ``percentile``: a run worse than this percentile of the earlier
            runs at the same epoch is pruned (25 prunes more than 50, 75 less).
        n_startup_runs: no pruning at an epoch until this many runs finished ok and
            reached it.
        n_warmup_epochs: never prune at an epoch <= this.
    """

    kind: PruneKind = "median"
    percentile: float = 50.0
    n_startup_runs: int = 3
    n_warmup_epochs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in PRUNE_KINDS:
            raise ConfigError(f"pruning kind must be one of {', '.join(PRUNE_KINDS)}, got "
                              f"{self.kind!r}; e.g. 'median'")
        if not (math.isfinite(self.percentile) and 0.0 <= self.percentile <= 100.0):
            raise ConfigError(f"pruning percentile must be in [0, 100], got {self.percentile!r};"
                              " e.g. 50")
        if self.n_startup_runs < 0 or self.n_warmup_epochs < 0:
            raise ConfigError(
                f"pruning n_startup_runs and n_warmup_epochs must be >= 0, got "
                f"{self.n_startup_runs} and {self.n_warmup_epochs}; e.g. 3 and 1"
            )

    @classmethod
    def from_record(cls, recorded: Any) -> PruningSettings:
        """The settings of a recorded dict (e.g. a trace header's); defaults when absent."""
        if not isinstance(recorded, Mapping):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in recorded.items() if key in known})

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def effective_percentile(self) -> float:
        """The percentile actually used (50 for ``median``)."""
        return 50.0 if self.kind == "median" else self.percentile

    @property
    def label(self) -> str:
        """``median`` or e.g. ``25th percentile``, for messages."""
        if self.effective_percentile == 50.0:
            return "median"
        return f"{self.effective_percentile:g}th percentile"


@dataclass(frozen=True)
class PrunePlan:
    """The per-epoch thresholds of one launch and how many earlier runs back each."""

    settings: PruningSettings
    thresholds: dict[int, float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneDecision:
    """Why a run is (or was) pruned: at ``epoch``, best val MSE so far above the threshold."""

    epoch: int
    best_val_mse: float
    threshold: float

    def reason(self, plan: PrunePlan) -> str:
        """One line for ``status_reason``."""
        count = plan.counts.get(self.epoch, 0)
        return (f"pruned at epoch {self.epoch}: best val_mse so far {self.best_val_mse:.6g} > "
                f"{self.threshold:.6g}, the {plan.settings.label} of {count} earlier runs at "
                f"epoch {self.epoch}")


def _as_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def val_mse_by_epoch(epochs: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """``{epoch: val_mse}`` from ``history.json``'s epochs (null or missing -> NaN)."""
    curve: dict[int, float] = {}
    for entry in epochs:
        epoch = entry.get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1:
            curve[epoch] = _as_float(entry.get("val_mse"))
    return curve


def plan_thresholds(curves: Iterable[Mapping[int, float]], settings: PruningSettings) -> PrunePlan:
    """The per-epoch thresholds from the val-MSE curves of earlier runs that finished ok.

    Pure. Epochs at or below the warm-up, or reached by fewer than ``n_startup_runs``
    runs, get no threshold (no pruning there), nor do epochs whose values are all NaN.
    """
    if not settings.enabled:
        return PrunePlan(settings)
    by_epoch: dict[int, list[float]] = {}
    for curve in curves:
        for epoch, value in curve.items():
            if epoch > settings.n_warmup_epochs:
                by_epoch.setdefault(epoch, []).append(value)
    thresholds, counts = {}, {}
    for epoch, values in sorted(by_epoch.items()):
        if len(values) < max(settings.n_startup_runs, 1):
            continue
        with warnings.catch_warnings():  # all-NaN slice: no threshold
            warnings.simplefilter("ignore", RuntimeWarning)
            threshold = float(np.nanpercentile(np.asarray(values, dtype=float),
                                               settings.effective_percentile))
        if not math.isnan(threshold):
            thresholds[epoch], counts[epoch] = threshold, len(values)
    return PrunePlan(settings, thresholds, counts)


def prune_decision(curve: Mapping[int, float],
                   thresholds: Mapping[int, float]) -> PruneDecision | None:
    """The first epoch at which a run's best val MSE so far is above its threshold.

    Pure; a run whose values so far are all NaN is pruned at the first threshold (as
    Optuna does). Returns None when the run is never pruned.
    """
    best = math.nan
    for epoch in sorted(curve):
        value = curve[epoch]
        if not math.isnan(value):
            best = value if math.isnan(best) else min(best, value)
        threshold = thresholds.get(epoch)
        if threshold is not None and (math.isnan(best) or best > threshold):
            return PruneDecision(epoch, best, threshold)
    return None


_curve_cache: dict[str, tuple[tuple[int, int], dict[int, float]]] = {}


def read_val_curve(run_dir: Path | str) -> dict[int, float]:
    """The val-MSE curve of ``run_dir/history.json`` ({} when missing or unreadable).

    Cached by modification time and size, so a launch re-reads only what changed (one
    ``stat`` per run: plain strings, as pathlib costs more than the stat at 1,000 runs).
    """
    path = os.path.join(run_dir, HISTORY_FILE)
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _curve_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(path, encoding="utf-8") as file:
            epochs = json.load(file).get("epochs", [])
        curve = val_mse_by_epoch(entry for entry in epochs if isinstance(entry, dict))
    except (OSError, ValueError, AttributeError, TypeError):
        curve = {}
    if len(_curve_cache) >= _CACHE_LIMIT:
        _curve_cache.clear()
    _curve_cache[path] = (key, curve)
    return curve


def plan_for_runs(runs: Sequence[RunRecord], paths: WorkspacePaths,
                  settings: PruningSettings) -> PrunePlan:
    """The thresholds for the next launch, from the runs that finished ok so far."""
    if not settings.enabled:
        return PrunePlan(settings)
    runs_dir = str(paths.runs)
    curves = (read_val_curve(os.path.join(runs_dir, run.run_id))
              for run in runs if run.status is RunStatus.OK)
    return plan_thresholds(curves, settings)


class PruneFileRefresher:
    """Keeps a running trainer's prune file consistent with the best-so-far rule.

    A trainer that compares only the current epoch's val MSE with the threshold would
    prune a run that already did better earlier. After each ``epoch`` event this drops
    the thresholds of later epochs that the best val MSE so far already satisfies, so
    both comparisons agree. ``write`` receives the thresholds left to write.
    """

    def __init__(self, thresholds: Mapping[int, float],
                 write: Callable[[dict[int, float]], object]) -> None:
        self.thresholds = dict(thresholds)
        self.best = math.nan
        self._write = write

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Feed one trainer event; rewrites the file when a threshold is dropped."""
        if event.get("event") != "epoch":
            return
        value, epoch = _as_float(event.get("val_mse")), event.get("epoch")
        if math.isnan(value) or not isinstance(epoch, int):
            return
        self.best = value if math.isnan(self.best) else min(self.best, value)
        cleared = [e for e, t in self.thresholds.items() if e > epoch and self.best <= t]
        if cleared:
            for e in cleared:
                del self.thresholds[e]
            self._write(dict(self.thresholds))
