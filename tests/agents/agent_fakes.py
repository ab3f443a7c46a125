"""The stub trainer of the agents tests (no torch, no network), importable by name.

(Not in ``conftest.py``: ``from conftest import`` resolves to another directory's conftest
when several test directories run in one pytest invocation.)
"""

from __future__ import annotations

import json
import math
from typing import Any

from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.executor import TrainOutcome, TrainRequest
from informer_nas.nas_system.pruning import prune_decision, val_mse_by_epoch
from informer_nas.nas_system.records import ConfigChange, RunStatus
from informer_nas.nas_system.search_space import flatten
from informer_nas.tools.edit_config import apply_changes


def fake_val_mse(flat: dict[str, Any]) -> float:
    """A deterministic function of the config (no seed): smooth in lr and dropout."""
    lr = float(flat["training.optimizer_params.lr"])
    value = 0.5 + 0.05 * abs(math.log10(lr) + 3.0) + 0.1 * float(flat["model.dropout"])
    value += 0.01 * int(flat["model.e_layers"]) + 0.001 * int(flat["model.d_model"]) / 16
    return round(value, 9)


def fake_curve(val: float) -> list[float]:
    """The val MSE per epoch of ``fake_train`` (two epochs, ending at ``val``)."""
    return [val * (1.2 - 0.1 * epoch) for epoch in (1, 2)]


def fake_train(request: TrainRequest) -> TrainOutcome:
    """Write what the trainer writes (config_used.py, metrics.json, history.json)."""
    request.run_dir.mkdir(parents=True, exist_ok=True)
    text = apply_changes(request.config_path.read_text(encoding="utf-8"),
                         [ConfigChange(key="training.seed", value=request.seed)])
    (request.run_dir / "config_used.py").write_text(text, encoding="utf-8")
    val = fake_val_mse(flatten(read_config_literal(request.run_dir / "config_used.py")))
    epochs = [{"epoch": e, "train_loss": val * (1.5 - 0.2 * e), "val_loss": val * (1.2 - 0.1 * e),
               "val_mse": mse, "val_mae": val, "test_mse": val, "test_mae": val,
               "lr": 1e-3, "seconds": 0.01} for e, mse in enumerate(fake_curve(val), start=1)]
    final = epochs[-1]["val_mse"]
    metrics = {"status": "ok", "reason": "", "val_mse": final, "val_mae": final,
               "test_mse": final * 1.1, "test_mae": final, "best_epoch": 2, "epochs_run": 2,
               "n_params": 100, "train_seconds": 0.01, "samples_per_second": 1.0,
               "device": "cpu", "seed": request.seed}
    (request.run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))
    (request.run_dir / "metrics.json").write_text(json.dumps(metrics))
    if request.on_event is not None:
        request.on_event({"event": "done", **metrics})
    return TrainOutcome(RunStatus.OK, "", metrics, 0.01, 0)


def pruning_fake_train(request: TrainRequest) -> TrainOutcome:
    """``fake_train`` that obeys the launch's prune thresholds as the trainer does.

    A pruned run reports no val MSE, so a replay that prunes differently diverges.
    """
    outcome = fake_train(request)
    curve = val_mse_by_epoch(json.loads((request.run_dir / "history.json").read_text())["epochs"])
    decision = prune_decision(curve, request.prune_thresholds or {})
    if decision is None:
        return outcome
    metrics = {**outcome.metrics, "status": "pruned", "reason": "pruned", "val_mse": None}
    (request.run_dir / "metrics.json").write_text(json.dumps(metrics))
    return TrainOutcome(RunStatus.PRUNED, "pruned", metrics, 0.01, 5)
