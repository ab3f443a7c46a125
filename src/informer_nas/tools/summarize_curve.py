"""The ``summarize_curve`` tool: a run's learning dynamics as numbers plus a paragraph.

``curve_summary`` is pure (it reads the epochs of ``history.json``); the tool reads the
file of a run in the workspace. The best epoch is chosen on ``val_mse`` (the gate's
metric), as the trainer does when it keeps ``best_model.pt``; a history without it falls
back to ``val_loss``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from informer_nas.errors import HistoryCorrupt, NasError
from informer_nas.nas_system.gate import GateThresholds, check_overfitting

if TYPE_CHECKING:
    from informer_nas.tools.context import ToolContext

# A run whose best val over its last PLATEAU_EPOCHS epochs improves on the earlier best by
# less than PLATEAU_TOLERANCE (relative) has plateaued.
PLATEAU_EPOCHS = 3
PLATEAU_TOLERANCE = 0.01
# Training diverged when the final train loss exceeds its minimum by this factor.
DIVERGENCE_FACTOR = 1.5
TREND_EPOCHS = 4


@dataclass(frozen=True)
class CurveSummary:
    """Learning dynamics of one run (None where the curve is too short to tell).

    Attributes:
        epochs_run: completed epochs.
        best_epoch: 1-based epoch with the lowest val MSE.
        best_val: val MSE at the best epoch.
        final_val: val MSE at the last epoch.
        train_val_gap: relative gap (val_loss - train_loss) / train_loss at the last epoch.
        gap_trend: least-squares slope of that gap per epoch over the last epochs
            (positive: widening, a sign of overfitting).
        is_overfitting: the gate's overfitting rule fires (see ``nas_system/gate.py``).
        is_plateau: no meaningful val improvement over the last epochs.
        is_diverged: non-finite losses or a train loss that blew up.
        noise: std of the epoch-to-epoch relative val changes (a scale for seed noise).
        paragraph: the same, in words.
    """

    epochs_run: int
    best_epoch: int | None
    best_val: float | None
    final_val: float | None
    train_val_gap: float | None
    gap_trend: float | None
    is_overfitting: bool
    is_plateau: bool
    is_diverged: bool
    noise: float | None
    paragraph: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``RunRecord.history_summary`` stores)."""
        return asdict(self)


def _number(epoch: Mapping[str, Any], key: str) -> float | None:
    value = epoch.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _val(epoch: Mapping[str, Any]) -> float | None:
    value = _number(epoch, "val_mse")
    return value if value is not None else _number(epoch, "val_loss")


def _slope(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    xs = range(len(values))
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(values)
    numerator = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, values, strict=True))
    return numerator / sum((x - x_mean) ** 2 for x in xs)


def _gaps(epochs: Sequence[Mapping[str, Any]]) -> list[float]:
    gaps = []
    for epoch in epochs:
        train, val = _number(epoch, "train_loss"), _number(epoch, "val_loss")
        if train is not None and val is not None and math.isfinite(train + val) and train:
            gaps.append((val - train) / abs(train))
    return gaps


def _noise(vals: Sequence[float]) -> float | None:
    changes = [(b - a) / abs(a) for a, b in zip(vals, vals[1:], strict=False) if a]
    return statistics.pstdev(changes) if len(changes) >= 2 else None


def _is_plateau(vals: Sequence[float]) -> bool:
    if len(vals) <= PLATEAU_EPOCHS:
        return False
    earlier, recent = min(vals[:-PLATEAU_EPOCHS]), min(vals[-PLATEAU_EPOCHS:])
    return (earlier - recent) / abs(earlier or 1.0) < PLATEAU_TOLERANCE


def _is_diverged(epochs: Sequence[Mapping[str, Any]]) -> bool:
    losses = [_number(e, key) for e in epochs for key in ("train_loss", "val_loss")]
    if any(value is not None and not math.isfinite(value) for value in losses):
        return True
    train = [t for t in (_number(e, "train_loss") for e in epochs) if t is not None]
    return len(train) >= 2 and train[-1] > DIVERGENCE_FACTOR * min(train)


def _best_epoch(epochs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    scored = [(value, e) for e in epochs if (value := _finite(_val(e))) is not None]
    if not scored:
        return None
    return min(scored, key=lambda pair: pair[0])[1]


def curve_summary(
    epochs: Sequence[Mapping[str, Any]], thresholds: GateThresholds | None = None
) -> CurveSummary:
    """Summarize the epochs of ``history.json`` (pure).

    Args:
        epochs: the ``epochs`` list of ``history.json``, in order.
        thresholds: gate thresholds for the overfitting verdict (defaults when None).
    """
    thresholds = thresholds or GateThresholds()
    vals = [v for v in (_finite(_val(e)) for e in epochs) if v is not None]
    best = _best_epoch(epochs)
    gaps = _gaps(epochs)
    summary = CurveSummary(
        epochs_run=len(epochs),
        best_epoch=int(best["epoch"]) if best is not None else None,
        best_val=_finite(_val(best)) if best is not None else None,
        final_val=_finite(_val(epochs[-1])) if epochs else None,
        train_val_gap=gaps[-1] if gaps else None,
        gap_trend=_slope(gaps[-TREND_EPOCHS:]),
        is_overfitting=check_overfitting(epochs, thresholds).outcome == "reject",
        is_plateau=_is_plateau(vals),
        is_diverged=_is_diverged(epochs),
        noise=_noise(vals),
        paragraph="",
    )
    return _with_paragraph(summary)


def _with_paragraph(s: CurveSummary) -> CurveSummary:
    if s.epochs_run == 0:
        text = "No completed epoch: the run stopped before the first validation."
    else:
        parts = [f"Ran {s.epochs_run} epoch(s); best val MSE {_fmt(s.best_val)} at epoch "
                 f"{s.best_epoch}, final {_fmt(s.final_val)}."]
        if s.train_val_gap is not None:
            trend = "" if s.gap_trend is None else f", trend {s.gap_trend:+.3f}/epoch"
            parts.append(f"Relative train/val gap {s.train_val_gap:+.2f}{trend}.")
        flags = [name for name, flag in (("overfitting", s.is_overfitting),
                                         ("plateaued", s.is_plateau),
                                         ("diverged", s.is_diverged)) if flag]
        parts.append(f"Curve {', '.join(flags)}." if flags else "No overfitting, plateau "
                     "or divergence detected.")
        if s.best_epoch == s.epochs_run and not s.is_diverged:
            parts.append("Still improving at the last epoch: more epochs may help.")
        if s.noise is not None:
            parts.append(f"Epoch-to-epoch val noise {s.noise:.1%}.")
        text = " ".join(parts)
    return replace(s, paragraph=text)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


KNOWN_LISTED = 20  # run ids named in an unknown-run error (the most recent ones)


def known_run_dirs(ctx: ToolContext) -> dict[str, Path]:
    """The run ids of the workspace's state and their directories, oldest first.

    A run's confirmation seeds are runs too, named ``run_0003/seed_7`` after their
    directory (``SeedResult.run_dir``); its main seed is the run itself.
    """
    paths = ctx.workspace.paths
    known: dict[str, Path] = {}
    for run in ctx.state.runs:
        known[run.run_id] = paths.run_dir(run.run_id)
        prefix = f"runs/{run.run_id}/"
        for seed in run.seeds:
            if seed.run_dir.startswith(prefix):
                known[seed.run_dir.removeprefix("runs/")] = paths.root / seed.run_dir
    return known


def unknown_run_message(run_id: str, known: Sequence[str]) -> str:
    """The error for a run id that is not in the state: what was asked, what exists."""
    if not known:
        return f"unknown run {run_id!r}: no run has been launched yet"
    listed = ", ".join(known[-KNOWN_LISTED:])
    more = f" (the last {KNOWN_LISTED} of {len(known)})" if len(known) > KNOWN_LISTED else ""
    return (f"unknown run {run_id!r}; pass a run id of this workspace, "
            f"e.g. {known[-1]!r}; known runs{more}: {listed}")


def run_dir_of(ctx: ToolContext, run_id: str) -> Path:
    """The directory of a run of the state (``run_0003``, or a confirmation seed
    ``run_0003/seed_7``). Never a path: anything else is an unknown run.

    Raises:
        NasError: the run id is unknown (the message lists the known ids).
    """
    # Matched on the ids alone: every launch and rule tool asks, and building the
    # directories of all runs (and their seeds) each time grew with the search.
    paths = ctx.workspace.paths
    main_id, is_seed, _ = run_id.partition("/")
    for run in reversed(ctx.state.runs):
        if run.run_id != main_id:
            continue
        if not is_seed:
            return paths.run_dir(run.run_id)
        if any(seed.run_dir == f"runs/{run_id}" for seed in run.seeds):
            return paths.root / "runs" / run_id
        break
    raise NasError(unknown_run_message(run_id, list(known_run_dirs(ctx))))


def load_history(ctx: ToolContext, run_id: str) -> list[dict[str, Any]] | None:
    """The epochs of a run's ``history.json``; None when the run wrote none.

    Raises:
        NasError: the run id is not one of the state (the message lists the known ids).
        HistoryCorrupt: history.json is not valid JSON with an ``epochs`` list.
    """
    path = run_dir_of(ctx, run_id) / "history.json"
    if not path.exists():
        return None
    try:
        epochs = json.loads(path.read_text(encoding="utf-8"))["epochs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HistoryCorrupt(f"{path} is unreadable ({exc}); rerun the run or delete it") from None
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        raise HistoryCorrupt(f"{path}: 'epochs' must be a list of objects; rerun the run")
    return epochs


def summarize_curve(ctx: ToolContext, run_id: str) -> str:
    """Summarize a run's learning curve: best epoch vs epochs run, the train/val gap and
    its trend (overfitting), plateau, divergence and epoch-to-epoch noise, as JSON numbers
    plus a short paragraph.

    Args:
        run_id: the run to summarize, e.g. "run_0003", or one of its confirmation
            seeds, e.g. "run_0003/seed_7" (see run_metrics).
    """
    epochs = load_history(ctx, run_id)
    summary = curve_summary(epochs or [], ctx.settings.thresholds)
    payload: dict[str, Any] = {"run_id": run_id, **{
        key: _rounded(value) for key, value in summary.to_dict().items()}}
    if epochs is None:
        payload["paragraph"] = f"{run_id} wrote no history.json (it stopped before any epoch)."
    return json.dumps(payload | _curves(epochs or []))


CURVE_EPOCHS = 20  # epochs of the curves shown (the last ones)
_DIGITS = 4


def _rounded(value: Any) -> Any:
    """Floats to 4 significant digits (a gap of -0.09090909142691982 costs tokens)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{_DIGITS}g}")
    return value


def _curves(epochs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The curves themselves (the last ``CURVE_EPOCHS`` epochs), oldest first: what the
    summary's words are about, e.g. to choose max_epochs, patience or the learning rate."""
    shown = epochs[-CURVE_EPOCHS:]
    curves: dict[str, Any] = {
        "val_by_epoch": [_rounded(_finite(_val(epoch))) for epoch in shown],
        "train_loss_by_epoch": [_rounded(_finite(_number(epoch, "train_loss")))
                                for epoch in shown],
    }
    if not shown:
        return {}
    if len(epochs) > len(shown):
        curves["curves_from_epoch"] = len(epochs) - len(shown) + 1
    return curves
