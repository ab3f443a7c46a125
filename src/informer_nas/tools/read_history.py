"""The ``read_history`` tool: the incumbent and the latest runs as compact JSON."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from informer_nas.errors import ConfigError
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.runs import incumbent

if TYPE_CHECKING:
    from informer_nas.tools.context import ToolContext

MAX_LAST_N = 50
_DIGITS = 5


def read_history(ctx: ToolContext, last_n: int = 5) -> str:
    """Return the search so far: the budget, the incumbent (its changes and metrics) and
    the last ``last_n`` runs (changes, val/test MSE, verdict and reason, status, the curve
    in one paragraph; ``summarize_curve`` gives its numbers), oldest first.

    Args:
        ctx: the tool context.
        last_n: how many recent runs to include (1 to 50).

    Raises:
        ConfigError: ``last_n`` out of range.
    """
    if type(last_n) is not int or not 1 <= last_n <= MAX_LAST_N:
        raise ConfigError(f"last_n must be an integer in [1, {MAX_LAST_N}], got {last_n!r}; e.g. 5")
    state = ctx.state
    best = incumbent(state)
    # the iteration in progress, as the planner's instructions number it ("iteration 30 of
    # 30; 1 left including this one"): the count of completed ones read as the current one
    iteration = state.current.iteration if state.current else state.iteration + 1
    payload = {
        "budget": {
            "iteration": iteration,
            "max_iterations": state.max_iterations,
            "remaining_including_this": max(0, state.max_iterations - iteration + 1),
        },
        "n_runs": len(state.runs),
        "incumbent": _incumbent_entry(best) if best else None,
        "runs": [_run_entry(run) for run in state.runs[-last_n:]],
    }
    return json.dumps(payload, separators=(",", ":"))


def _changes(run: RunRecord) -> dict[str, Any]:
    return {change.key: change.value for change in run.changes}


def _incumbent_entry(run: RunRecord) -> dict[str, Any]:
    return _compact({
        "run_id": run.run_id,
        "iteration": run.iteration,
        "changes": _changes(run),
        "val_mse": _round(run.val_mse),
        "val_mae": _round(run.val_mae),
        "test_mse": _round(run.test_mse),
        "test_mae": _round(run.test_mae),
        "mean_val_mse": _round(run.mean_val_mse),
    })


def _run_entry(run: RunRecord) -> dict[str, Any]:
    return _compact({
        "run_id": run.run_id,
        "iteration": run.iteration,
        "step_type": run.step_type,
        "changes": _changes(run),
        "val_mse": _round(run.val_mse),
        "test_mse": _round(run.test_mse),
        "mean_val_mse": _round(run.mean_val_mse),
        "status": run.status.value,
        "status_reason": run.status_reason if not run.status.is_success else "",
        "verdict": run.verdict,
        "verdict_reason": run.verdict_reason,
        "accepted": run.accepted,
        # the curve's one-paragraph summary, as launch_training gives it: the numbers
        # behind it (summarize_curve) tripled each run's size, resent every turn
        "curve": (run.history_summary or {}).get("paragraph"),
    })


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{_DIGITS}g}")


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    # Empty strings and missing values cost tokens and say nothing.
    return {key: value for key, value in entry.items() if value not in ("", None)}
