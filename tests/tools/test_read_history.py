"""read_history: budget, incumbent and the last runs as compact JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import ConfigError
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.records import ConfigChange, RunRecord, RunStatus
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.read_history import read_history


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workspace = Workspace.create(tmp_path, "tiny")
    executor = CallableExecutor(lambda request: pytest.fail("no training here"))
    state = load_state(workspace.paths)
    state.max_iterations = 10
    return ToolContext(workspace, state, SessionSettings(), executor)


def two_trial_history(ctx: ToolContext) -> None:
    state = ctx.state
    state.runs = [
        RunRecord(run_id="run_0000", iteration=1, status=RunStatus.OK, accepted=True,
                  step_type="small", val_mse=0.51234567, test_mse=0.6, verdict="accept",
                  verdict_reason="first successful run: baseline",
                  history_summary={"best_epoch": 2, "epochs_run": 2, "best_val": 0.51234567,
                                   "train_val_gap": -0.09090909142691982,
                                   "paragraph": "Ran 2 epoch(s); best val MSE 0.5123."}),
        RunRecord(run_id="run_0001", iteration=2, status=RunStatus.DIVERGED,
                  status_reason="loss became NaN at epoch 1", accepted=False,
                  step_type="radical", verdict="reject", verdict_reason="the run failed",
                  changes=[ConfigChange(key="training.optimizer_params.lr", value=0.01)]),
    ]
    state.incumbent_run_id = "run_0000"
    state.iteration = 2


def test_an_empty_history(ctx: ToolContext) -> None:
    payload = json.loads(read_history(ctx))
    assert payload == {"budget": {"iteration": 1, "max_iterations": 10,
                                  "remaining_including_this": 10},
                       "n_runs": 0, "incumbent": None, "runs": []}


def test_the_incumbent_and_the_last_runs(ctx: ToolContext) -> None:
    two_trial_history(ctx)
    text = read_history(ctx)
    assert text == json.dumps(json.loads(text), separators=(",", ":"))  # compact
    payload = json.loads(text)
    # the iteration in progress (3: two are done), numbered as in the planner's prompt
    assert payload["budget"] == {"iteration": 3, "max_iterations": 10,
                                 "remaining_including_this": 8}
    assert payload["incumbent"] == {"run_id": "run_0000", "iteration": 1, "changes": {},
                                    "val_mse": 0.51235, "test_mse": 0.6}
    failed = payload["runs"][1]
    assert failed["changes"] == {"training.optimizer_params.lr": 0.01}
    assert failed["status"] == "diverged" and failed["verdict"] == "reject"
    assert failed["status_reason"] == "loss became NaN at epoch 1"
    # the curve as one paragraph (summarize_curve has the numbers): each run's entry is
    # resent every turn of every iteration
    assert payload["runs"][0]["curve"] == "Ran 2 epoch(s); best val MSE 0.5123."
    assert "history_summary" not in payload["runs"][0]
    assert "curve" not in failed  # no curve, no key
    assert "status_reason" not in payload["runs"][0]  # nothing to say about a success
    assert [run["run_id"] for run in json.loads(read_history(ctx, last_n=1))["runs"]] == [
        "run_0001"
    ]


@pytest.mark.parametrize("last_n", [0, 51, -1, True, 2.5], ids=str)
def test_a_bad_last_n_is_refused(ctx: ToolContext, last_n: Any) -> None:
    with pytest.raises(ConfigError, match=r"last_n must be an integer in \[1, 50\]"):
        read_history(ctx, last_n=last_n)


def test_the_budget_numbers_the_iteration_in_progress(ctx: ToolContext) -> None:
    """At the last iteration the planner reads iteration 10 of 10 with 1 left (this one),
    as its instructions say, not 'iteration 9, remaining 1' (one more after this)."""
    from informer_nas.nas_system.state import IterationScratch

    ctx.state.iteration = 9
    ctx.state.current = IterationScratch(iteration=10)
    assert json.loads(read_history(ctx))["budget"] == {
        "iteration": 10, "max_iterations": 10, "remaining_including_this": 1}
