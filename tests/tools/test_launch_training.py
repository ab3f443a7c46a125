"""launch_training, confirm_with_seeds and ensure_seeds with a stub executor (no torch)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import ConfigError, LaunchError
from informer_nas.nas_system.executor import (
    CallableExecutor,
    RunInterrupted,
    TrainOutcome,
    TrainRequest,
)
from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import HOT_RUNS, IterationScratch, load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.launch_training import (
    confirm_with_seeds,
    confirmation_seeds,
    ensure_seeds,
    launch_training,
    run_seed,
)

ValMse = Callable[[TrainRequest], float]


def fake_training(request: TrainRequest, val_mse: float, status: str = "ok") -> TrainOutcome:
    """Leave the files the real trainer leaves, and report through on_event."""
    run_dir = request.run_dir
    (run_dir / "config_used.py").write_text(request.config_path.read_text())
    epochs = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "val_mse": val_mse + 0.1},
              {"epoch": 2, "train_loss": 0.8, "val_loss": 1.1, "val_mse": val_mse}]
    (run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))
    reason = "" if status == "ok" else "loss is NaN"
    metrics: dict[str, Any] = {"status": status, "reason": reason,
               "val_mse": val_mse, "val_mae": 0.5, "test_mse": val_mse * 1.1, "test_mae": 0.6,
               "best_epoch": 2, "epochs_run": 2, "seed": request.seed}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if request.on_event is not None:
        request.on_event({"event": "epoch", "epoch": 1})
    return TrainOutcome(RunStatus(status), reason, metrics, 1.5, 0)


def make_context(tmp_path: Path, function: Callable[[TrainRequest], TrainOutcome],
                 **settings: Any) -> ToolContext:
    workspace = Workspace.create(tmp_path / "ws", "tiny")
    state = load_state(workspace.paths)
    state.current = IterationScratch(iteration=0)
    return ToolContext(workspace, state, SessionSettings(**settings), CallableExecutor(function))


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return make_context(tmp_path, lambda request: fake_training(request, 0.5), seed=10,
                        timeout_s=30.0)


def executor_of(ctx: ToolContext) -> CallableExecutor:
    assert isinstance(ctx.executor, CallableExecutor)
    return ctx.executor


def test_launch_records_the_run(ctx: ToolContext) -> None:
    events: list[dict[str, Any]] = []
    ctx.on_progress = events.append
    summary = json.loads(launch_training(ctx))
    assert summary["run_id"] == "run_0000" and summary["status"] == "ok"
    assert summary["val_mse"] == 0.5 and summary["best_epoch"] == 2 and summary["seconds"] == 1.5
    assert summary["curve"]
    saved = load_state(ctx.workspace.paths)  # persisted, not only in memory
    record = saved.runs[0]
    assert record.status is RunStatus.OK and record.test_mse == pytest.approx(0.55)
    assert record.history_summary is not None and record.history_summary["epochs_run"] == 2
    assert saved.current is not None and saved.current.launched_run_id == "run_0000"
    assert events == [{"event": "epoch", "epoch": 1, "run_id": "run_0000"}]
    request = executor_of(ctx).requests[0]
    assert request.timeout_s == 30.0 and request.config_path == ctx.workspace.paths.candidate


def test_state_is_saved_running_before_training(tmp_path: Path) -> None:
    seen: list[RunRecord] = []

    def inspect_then_train(request: TrainRequest) -> TrainOutcome:
        on_disk = load_state(context.workspace.paths)
        seen.extend(on_disk.runs)
        assert on_disk.current is not None and on_disk.current.launched_run_id == "run_0000"
        assert request.run_dir.is_dir() and not any(request.run_dir.iterdir())
        return fake_training(request, 0.5)

    context = make_context(tmp_path, inspect_then_train)
    launch_training(context)
    assert [(run.run_id, run.status) for run in seen] == [("run_0000", RunStatus.RUNNING)]


def test_one_launch_per_iteration(ctx: ToolContext) -> None:
    launch_training(ctx)
    with pytest.raises(LaunchError, match="one training per iteration: run_0000"):
        launch_training(ctx)
    assert len(ctx.state.runs) == 1 and len(executor_of(ctx).requests) == 1
    ctx.state.current = IterationScratch(iteration=1)  # the next iteration may launch again
    assert json.loads(launch_training(ctx))["run_id"] == "run_0001"


def test_candidate_is_created_from_config_when_not_edited(ctx: ToolContext) -> None:
    paths = ctx.workspace.paths
    launch_training(ctx)
    assert paths.candidate.read_text() == paths.config.read_text()
    used = paths.run_dir("run_0000") / "config_used.py"
    assert used.read_text() == paths.config.read_text()


def test_edited_candidate_is_trained(ctx: ToolContext) -> None:
    paths = ctx.workspace.paths
    edited = paths.config.read_text().replace('"dropout": 0.05', '"dropout": 0.25')
    paths.candidate.write_text(edited)
    launch_training(ctx)
    assert (paths.run_dir("run_0000") / "config_used.py").read_text() == edited
    assert '"dropout": 0.25' in edited


def test_invalid_candidate_costs_no_run_id(ctx: ToolContext) -> None:
    ctx.workspace.paths.candidate.write_text("CONFIG = {'model': {'d_model': -1}}\n")
    with pytest.raises(ConfigError, match="d_model"):
        launch_training(ctx)
    assert ctx.state.runs == [] and ctx.state.next_run_number == 0


@pytest.mark.parametrize("seed", [-1, 2**31, 10**20])
def test_seed_out_of_range_costs_no_run_id(ctx: ToolContext, seed: int) -> None:
    with pytest.raises(LaunchError, match="seed must be between 0 and 2147483647"):
        launch_training(ctx, seed=seed)
    assert ctx.state.runs == [] and ctx.state.next_run_number == 0
    assert not executor_of(ctx).requests


@pytest.mark.parametrize(
    ("seed", "expected"),
    [(None, run_seed(10, 0)), (1234, 1234)],
    ids=["derived-from-base-seed-and-run-number", "explicit"],
)
def test_seed(ctx: ToolContext, seed: int | None, expected: int) -> None:
    launch_training(ctx, seed=seed)
    assert executor_of(ctx).requests[0].seed == expected == ctx.state.runs[0].seed


def test_failed_run_is_recorded(tmp_path: Path) -> None:
    context = make_context(tmp_path, lambda request: fake_training(request, 9.0, "diverged"))
    summary = json.loads(launch_training(context))
    assert summary["status"] == "diverged" and summary["reason"] == "loss is NaN"
    record = load_state(context.workspace.paths).runs[0]
    assert record.status is RunStatus.DIVERGED and record.status_reason == "loss is NaN"


def test_interrupt_is_recorded_then_raised(tmp_path: Path) -> None:
    def interrupted(request: TrainRequest) -> TrainOutcome:
        outcome = TrainOutcome(RunStatus.INTERRUPTED, "signal 2", {"val_mse": None}, 0.3, 130)
        raise RunInterrupted(outcome, 2)

    context = make_context(tmp_path, interrupted)
    with pytest.raises(KeyboardInterrupt):
        launch_training(context)
    record = load_state(context.workspace.paths).runs[0]
    assert record.status is RunStatus.INTERRUPTED and record.status_reason == "signal 2"


def test_executor_error_is_recorded_then_raised(tmp_path: Path) -> None:
    def broken(request: TrainRequest) -> TrainOutcome:
        raise LaunchError("cannot start the trainer")

    context = make_context(tmp_path, broken)
    with pytest.raises(LaunchError):
        launch_training(context)
    record = load_state(context.workspace.paths).runs[0]
    assert record.status is RunStatus.CRASHED and "cannot start" in record.status_reason


def seeded_context(tmp_path: Path) -> ToolContext:
    """Val MSE 0.5 + seed / 1000: each seed gives a distinct, known value."""
    return make_context(tmp_path, lambda r: fake_training(r, 0.5 + r.seed / 1000), seed=0)


def test_confirm_with_seeds_records_each_seed(tmp_path: Path) -> None:
    context = seeded_context(tmp_path)
    launch_training(context, seed=0)  # main seed 0: val 0.5
    results = confirm_with_seeds(context, "run_0000", [1, 2])
    assert [(r.seed, r.val_mse, r.run_dir) for r in results] == [
        (1, 0.501, "runs/run_0000/seed_1"), (2, 0.502, "runs/run_0000/seed_2")]
    assert (context.workspace.paths.run_dir("run_0000") / "seed_2" / "metrics.json").exists()
    record = load_state(context.workspace.paths).runs[0]
    assert [s.seed for s in record.seeds] == [1, 2]
    assert [s.seconds for s in record.seeds] == [1.5, 1.5]  # counted in the training time
    from informer_nas.nas_system.status import workspace_status
    assert workspace_status(context.workspace)["budget"]["training_seconds"] == 4.5
    assert record.mean_val_mse == pytest.approx((0.5 + 0.501 + 0.502) / 3)


def test_ensure_seeds_trains_only_missing_seeds(tmp_path: Path) -> None:
    context = seeded_context(tmp_path)
    launch_training(context, seed=0)
    wanted = confirmation_seeds(0, 2)
    first = ensure_seeds(context, "run_0000", 2)  # a count means the session's seed list
    assert [r.seed for r in first] == wanted
    assert len(executor_of(context).requests) == 3
    again = ensure_seeds(context, "run_0000", [*wanted, 0])  # 0 is the main seed: reused
    assert [r.seed for r in again] == [*wanted, 0]
    assert len(executor_of(context).requests) == 3


def test_ensure_seeds_persists_an_old_incumbent(tmp_path: Path) -> None:
    context = seeded_context(tmp_path)
    launch_training(context)
    for number in range(1, HOT_RUNS + 3):  # push run_0000 out of the journal's hot window
        context.state.runs.append(RunRecord(run_id=f"run_{number:04d}", iteration=number,
                                            status=RunStatus.CRASHED))
    context.state.next_run_number = HOT_RUNS + 3
    context.save()
    ensure_seeds(context, "run_0000", [5])
    record = load_state(context.workspace.paths).runs[0]
    assert [(s.seed, s.val_mse) for s in record.seeds] == [(5, 0.505)]


def test_failed_run_cannot_be_confirmed(tmp_path: Path) -> None:
    context = make_context(tmp_path, lambda request: fake_training(request, 9.0, "diverged"))
    launch_training(context)
    with pytest.raises(LaunchError, match="run_0000 cannot be confirmed"):
        ensure_seeds(context, "run_0000", [1])


def test_failed_confirmation_seed_is_recorded(tmp_path: Path) -> None:
    def main_ok_seeds_fail(request: TrainRequest) -> TrainOutcome:
        return fake_training(request, 0.5, "ok" if request.seed == 0 else "oom")

    context = make_context(tmp_path, main_ok_seeds_fail, seed=0)
    launch_training(context, seed=0)
    (result,) = ensure_seeds(context, "run_0000", [3])
    assert result.status is RunStatus.OOM
    assert context.state.runs[0].mean_val_mse == 0.5  # the mean counts successful seeds


@pytest.mark.slow
def test_real_trainer_end_to_end(tmp_path: Path) -> None:
    """The tiny preset through the real trainer subprocess (a few seconds)."""
    workspace = Workspace.create(tmp_path / "ws", "tiny")
    state = load_state(workspace.paths)
    context = ToolContext(workspace, state, SessionSettings(timeout_s=300),
                          LocalSubprocessExecutor())
    events: list[dict[str, Any]] = []
    context.on_progress = events.append
    summary = json.loads(launch_training(context))
    assert summary["status"] == "ok", summary
    assert summary["val_mse"] > 0 and summary["epochs_run"] >= 1
    assert {"start", "epoch", "done"} <= {event["event"] for event in events}
    assert load_state(workspace.paths).runs[0].history_summary is not None


def test_a_redone_iteration_keeps_its_seed(tmp_path: Path) -> None:
    # An iteration redone after a crash gets a new run id but the same seed, so a resumed
    # session trains exactly what an uninterrupted one would.
    from informer_nas.nas_system.state import IterationScratch

    ctx = make_context(tmp_path, lambda r: fake_training(r, 0.5), seed=10)
    ctx.state.current = None
    launch_training(ctx)
    assert ctx.state.runs[0].iteration == 1 and ctx.state.runs[0].seed == run_seed(10, 1)
    ctx.state.current = IterationScratch(iteration=1)
    launch_training(ctx)
    assert [r.run_id for r in ctx.state.runs] == ["run_0000", "run_0001"]
    assert [q.seed for q in executor_of(ctx).requests] == [run_seed(10, 1)] * 2


def test_neighbouring_base_seeds_share_no_seed() -> None:
    """Seeds 1 and 2 must not give the same search shifted by one iteration: the training
    seeds of each session differ from the other's (and from its own confirmation seeds)."""
    first = {run_seed(1, i) for i in range(1, 50)} | set(confirmation_seeds(1, 5))
    second = {run_seed(2, i) for i in range(1, 50)} | set(confirmation_seeds(2, 5))
    assert len(first) == len(second) == 54 and not first & second


@pytest.mark.parametrize("failure", ["launcher", "trainer", "data-unreadable"])
def test_a_machine_fault_stops_the_session_and_resume_redoes_the_iteration(
        tmp_path: Path, failure: str) -> None:
    """Disk full or no permission: the session stops with one line instead of judging (and
    rejecting) every candidate as crashed, and the resumed session redoes the iteration."""
    import errno

    from informer_nas.api import run_nas_optimization
    from informer_nas.errors import EnvironmentFailure
    from informer_nas.nas_system.executor import CallableExecutor

    def full_disk(request: TrainRequest) -> TrainOutcome:
        if request.run_dir.name != "run_0001":
            return fake_training(request, 0.5)
        if failure == "launcher":
            raise OSError(errno.ENOSPC, "No space left on device")
        if failure == "data-unreadable":  # what the trainer says of a file it cannot open
            return TrainOutcome(RunStatus.INVALID_CONFIG, "data.csv cannot be read as CSV "
                                "([Errno 13] Permission denied: 'data.csv')", {}, 0.1, 2)
        return TrainOutcome(RunStatus.CRASHED, "OSError: [Errno 27] File too large", {}, 0.1, 1)

    root = tmp_path / "ws"
    with pytest.raises(EnvironmentFailure, match="the machine, not the candidate") as caught:
        run_nas_optimization(root, iters=3, planner="tpe", preset="tiny", quiet=True,
                             executor=CallableExecutor(full_disk))
    assert f"nas resume --workspace {root}" in str(caught.value)
    state = load_state(Workspace.open(root).paths)
    assert state.iteration == 1 and state.runs[1].status is RunStatus.INTERRUPTED
    result = run_nas_optimization(root, quiet=True,
                                  executor=CallableExecutor(lambda r: fake_training(r, 0.4)))
    assert (result.stopped_by, result.iteration) == ("budget", 3)
    runs = load_state(Workspace.open(root).paths).runs
    assert [r.iteration for r in runs] == [1, 2, 2, 3] and runs[2].seed == runs[1].seed


def test_data_changed_during_a_session_stops_it_before_the_next_run(tmp_path: Path) -> None:
    """The data check at session start missed a file rewritten mid-session: the next run was
    trained on other data and compared with the incumbent."""
    from informer_nas.api import run_nas_optimization
    from informer_nas.errors import EnvironmentFailure
    from informer_nas.informer.data_files import bundled_csv_path
    from informer_nas.nas_system.executor import CallableExecutor

    data = tmp_path / "mine.csv"
    data.write_text("".join(bundled_csv_path().read_text().splitlines(keepends=True)[:3001]))
    root = tmp_path / "ws"
    Workspace.create(root, "tiny", data)

    def rewrites_the_data(request: TrainRequest) -> TrainOutcome:
        if request.run_dir.name == "run_0000":
            data.write_text(data.read_text() + "")  # same bytes: not a change
        if request.run_dir.name == "run_0001":
            lines = data.read_text().splitlines(keepends=True)
            data.write_text("".join(lines[:-1]))  # one row fewer
        return fake_training(request, 0.5 - int(request.run_dir.name[-1]) / 100)

    with pytest.raises(EnvironmentFailure, match="no longer the one the incumbent"):
        run_nas_optimization(root, iters=4, planner="tpe", quiet=True,
                             executor=CallableExecutor(rewrites_the_data))
    state = load_state(Workspace.open(root).paths)
    assert [r.run_id for r in state.runs] == ["run_0000", "run_0001"]  # no run_0002


def test_the_result_names_the_incumbent_and_an_unchanged_candidate(ctx: ToolContext) -> None:
    """The model sees what the gate will compare, and is told when it trained the incumbent
    itself (it launched without edit_config): the iteration measured only seed noise."""
    first = json.loads(launch_training(ctx))
    assert "incumbent_val_mse" not in first and "note" not in first  # nothing to compare
    state = ctx.state
    state.runs[0].accepted = True
    state.incumbent_run_id = "run_0000"
    state.current = IterationScratch(iteration=1)
    second = json.loads(launch_training(ctx))
    assert (second["incumbent_run_id"], second["incumbent_val_mse"]) == ("run_0000", 0.5)
    assert second["note"].startswith("no edit_config this iteration: this trained the "
                                     "incumbent config unchanged")
