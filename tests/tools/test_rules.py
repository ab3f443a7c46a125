"""The rule tools over recorded runs: failure, improvement (with seeds), overfitting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import ConfigError, NasError
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.records import RunRecord, RunStatus, SeedResult
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.rules import check_failure, check_improvement, check_overfitting

OVERFIT = [(1.0, 1.5), (0.8, 1.3), (0.6, 1.4), (0.4, 1.5), (0.3, 1.6)]
HEALTHY = [(1.0, 1.5), (0.8, 1.3), (0.7, 1.2)]


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    def never(request: TrainRequest) -> TrainOutcome:
        raise AssertionError("the rule tools never train")

    workspace = Workspace.create(tmp_path / "ws", "tiny")
    return ToolContext(workspace, load_state(workspace.paths), SessionSettings(),
                       CallableExecutor(never))


def add_run(ctx: ToolContext, run_id: str, val_mse: float | None,
            status: RunStatus = RunStatus.OK, curve: list[tuple[float, float]] = HEALTHY,
            **fields: Any) -> RunRecord:
    record = RunRecord(run_id=run_id, iteration=len(ctx.state.runs), status=status,
                       val_mse=val_mse, **fields)
    ctx.state.runs.append(record)
    run_dir = ctx.workspace.paths.run_dir(run_id)
    run_dir.mkdir(parents=True)
    epochs = [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(curve)]
    (run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))
    return record


def result(text: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(text)
    return payload


@pytest.mark.parametrize(
    ("status", "val_mse", "expected"),
    [
        (RunStatus.OK, 0.5, "pass"),  # finished with a metric
        (RunStatus.DIVERGED, None, "reject"),  # a failed status rejects
        (RunStatus.PRUNED, 0.9, "reject"),  # pruned counts as failed
        (RunStatus.OK, None, "reject"),  # ok without a val_mse is a failure
    ],
    ids=["ok", "diverged", "pruned", "ok-without-metric"],
)
def test_check_failure(ctx: ToolContext, status: RunStatus, val_mse: float | None,
                       expected: str) -> None:
    add_run(ctx, "run_0000", val_mse, status, status_reason="why")
    assert result(check_failure(ctx, "run_0000"))["outcome"] == expected


@pytest.mark.parametrize(
    ("val_mse", "expected"),
    [
        (0.97, "accept"),  # 3 % better than the incumbent's 1.0
        (0.99, "borderline"),  # inside the band
        (1.01, "reject"),  # 1 % worse
    ],
    ids=["better", "band", "worse"],
)
def test_check_improvement_against_incumbent(ctx: ToolContext, val_mse: float,
                                             expected: str) -> None:
    add_run(ctx, "run_0000", 1.0)
    ctx.state.incumbent_run_id = "run_0000"
    add_run(ctx, "run_0001", val_mse)
    payload = result(check_improvement(ctx, "run_0001"))
    assert payload["outcome"] == expected
    assert payload["relative_change"] == pytest.approx(val_mse - 1.0)


def test_check_improvement_without_incumbent_is_baseline(ctx: ToolContext) -> None:
    add_run(ctx, "run_0000", 3.0)
    payload = result(check_improvement(ctx, "run_0000"))
    assert payload["outcome"] == "accept" and "baseline" in payload["reason"]


def test_check_improvement_of_the_incumbent_itself(ctx: ToolContext) -> None:
    add_run(ctx, "run_0000", 1.0)
    ctx.state.incumbent_run_id = "run_0000"
    assert result(check_improvement(ctx, "run_0000"))["outcome"] == "pass"


def test_check_improvement_of_a_failed_run(ctx: ToolContext) -> None:
    add_run(ctx, "run_0000", None, RunStatus.TIMEOUT, status_reason="too slow")
    payload = result(check_improvement(ctx, "run_0000"))
    assert payload["outcome"] == "reject" and "timeout" in payload["reason"]


def test_check_improvement_uses_shared_seeds(ctx: ToolContext) -> None:
    def seeds(values: dict[int, float]) -> list[SeedResult]:
        return [SeedResult(seed=s, status=RunStatus.OK, val_mse=v, run_dir=f"runs/x/seed_{s}")
                for s, v in values.items()]

    add_run(ctx, "run_0000", 1.0, seed=0, seeds=seeds({7: 1.0, 8: 1.0}))
    ctx.state.incumbent_run_id = "run_0000"
    # main seed looks 40 % better, but the mean over seeds 7 and 8 is 1 % worse
    add_run(ctx, "run_0001", 0.6, seed=1, seeds=seeds({7: 1.01, 8: 1.01}))
    payload = result(check_improvement(ctx, "run_0001"))
    assert payload["outcome"] == "reject" and payload["compared_seeds"] == [7, 8]


@pytest.mark.parametrize(
    ("curve", "expected"),
    [(OVERFIT, "reject"), (HEALTHY, "pass")],
    ids=["overfits", "healthy"],  # val rising 3 epochs with train falling and gap widening
)
def test_check_overfitting(ctx: ToolContext, curve: list[tuple[float, float]],
                           expected: str) -> None:
    add_run(ctx, "run_0000", 1.0, curve=curve)
    assert result(check_overfitting(ctx, "run_0000"))["outcome"] == expected


def test_unknown_run_is_refused_with_known_ids(ctx: ToolContext) -> None:
    add_run(ctx, "run_0000", 1.0)
    with pytest.raises(ConfigError, match=r"'run_0009'.*run_0000"):
        check_failure(ctx, "run_0009")


@pytest.mark.parametrize("rule", [check_failure, check_improvement, check_overfitting],
                         ids=lambda rule: rule.__name__)
@pytest.mark.parametrize("run_id", ["OUTSIDE", "..", "", "runs/run_0000", "run_0000/.."],
                         ids=["absolute-path", "parent", "empty", "relative-path", "escape"])
def test_paths_are_unknown_runs(ctx: ToolContext, tmp_path: Path, rule: Any,
                                run_id: str) -> None:
    """A path is never read as a run: the rule tools take run ids of the state only."""
    add_run(ctx, "run_0000", 1.0)
    outside = tmp_path / "somewhere" / "fakerun"
    outside.mkdir(parents=True)
    (outside / "history.json").write_text(json.dumps({"epochs": []}))
    with pytest.raises(NasError, match=r"unknown run.*run_0000"):
        rule(ctx, str(outside) if run_id == "OUTSIDE" else run_id)


def test_running_run_is_refused(ctx: ToolContext) -> None:
    add_run(ctx, "run_0000", None, RunStatus.RUNNING)
    with pytest.raises(NasError, match="still running"):
        check_overfitting(ctx, "run_0000")
