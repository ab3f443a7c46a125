"""The session loop with a stub planner and evaluator (no agents, no torch)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.brain import Budget, EvaluatorOutcome, PlannerOutcome
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.gate import GateVerdict
from informer_nas.nas_system.records import ConfigChange, RoleUsage, RunRecord, RunStatus
from informer_nas.nas_system.session import run_session
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import SessionInfo, load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.edit_config import apply_changes, edit_config
from informer_nas.tools.launch_training import launch_training


def train_by_dropout(request: TrainRequest) -> TrainOutcome:
    """A stub trainer: val MSE = 1 + dropout (so the planner picks the outcome)."""
    request.run_dir.mkdir(parents=True, exist_ok=True)
    text = apply_changes(request.config_path.read_text(encoding="utf-8"),
                         [ConfigChange(key="training.seed", value=request.seed)])
    (request.run_dir / "config_used.py").write_text(text, encoding="utf-8")
    val = 1.0 + float(read_config_literal(request.config_path)["model"]["dropout"])
    epochs = [{"epoch": 1, "train_loss": 2.0, "val_loss": val + 0.5},
              {"epoch": 2, "train_loss": 1.5, "val_loss": val}]
    metrics = {"status": "ok", "reason": "", "val_mse": val, "val_mae": val, "test_mse": val,
               "test_mae": val, "best_epoch": 2, "epochs_run": 2}
    (request.run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))
    (request.run_dir / "metrics.json").write_text(json.dumps(metrics))
    return TrainOutcome(RunStatus.OK, "", metrics, 0.01, 0)


@dataclass
class ScriptPlanner:
    """Plays one dropout value per iteration (None: answer stop without launching)."""

    dropouts: list[float | None]
    name: str = "script"
    calls: int = 0
    finished: list[str | None] = field(default_factory=list)
    crash_after_launch: bool = False

    def plan_iteration(self, ctx: ToolContext, budget: Budget) -> PlannerOutcome:
        dropout = self.dropouts[self.calls]
        self.calls += 1
        if dropout is None:
            return PlannerOutcome("stop", "nothing left", "budget")
        edit_config(ctx, [ConfigChange(key="model.dropout", value=dropout)], "try it")
        launch_training(ctx)
        if self.crash_after_launch:
            raise RuntimeError("simulated crash after the training")
        return PlannerOutcome("small", f"dropout {dropout}", "test")

    def finish_iteration(self, ctx: ToolContext, record: RunRecord | None) -> None:
        self.finished.append(record.run_id if record else None)


@dataclass
class RecordingEvaluator:
    accept: bool = True
    judged: list[str] = field(default_factory=list)

    def judge(self, ctx: ToolContext, run_id: str, verdict: GateVerdict) -> EvaluatorOutcome:
        assert verdict.verdict == "borderline"
        self.judged.append(run_id)
        return EvaluatorOutcome(self.accept, "stub", decided_by="evaluator")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws", "tiny")


Run = Callable[..., object]


def session(workspace: Workspace, planner: ScriptPlanner, iters: int | None,
            evaluator: RecordingEvaluator | None = None,
            executor: CallableExecutor | None = None) -> object:
    return run_session(workspace, planner, evaluator or RecordingEvaluator(), SessionSettings(),
                       executor or CallableExecutor(train_by_dropout), iters)


def test_budget_is_spent_then_stops(workspace: Workspace) -> None:
    result = session(workspace, ScriptPlanner([0.1, 0.2, 0.3]), iters=3)
    state = load_state(workspace.paths)
    assert result.stopped_by == "budget" and result.iterations_run == 3  # type: ignore[attr-defined]
    assert state.iteration == 3 and [r.run_id for r in state.runs] == [
        "run_0000", "run_0001", "run_0002"]
    assert all(r.verdict is not None for r in state.runs) and state.current is None


def test_planner_stop_ends_early_without_spending(workspace: Workspace) -> None:
    result = session(workspace, ScriptPlanner([0.1, None]), iters=5)
    state = load_state(workspace.paths)
    assert result.stopped_by == "planner"  # type: ignore[attr-defined]
    assert state.iteration == 1 and len(state.runs) == 1


def test_resume_extends_the_budget(workspace: Workspace) -> None:
    session(workspace, ScriptPlanner([0.1, 0.2]), iters=2)
    planner = ScriptPlanner([0.3, 0.05])
    session(workspace, planner, iters=4)
    assert load_state(workspace.paths).iteration == 4 and planner.calls == 2
    idle = ScriptPlanner([])
    result = session(workspace, idle, iters=None)  # the stored budget is spent
    assert idle.calls == 0 and result.iterations_run == 0  # type: ignore[attr-defined]


def test_rejected_candidate_never_stays_in_config(workspace: Workspace) -> None:
    session(workspace, ScriptPlanner([0.1, 0.4]), iters=2)
    state = load_state(workspace.paths)
    assert [r.accepted for r in state.runs] == [True, False]
    used = workspace.paths.run_dir("run_0000") / "config_used.py"
    assert workspace.paths.config.read_text() == used.read_text()
    assert not workspace.paths.candidate.exists()


@pytest.mark.parametrize(("second", "verdict", "judged"), [
    (0.09, "borderline", 1),  # -0.9 %: between the thresholds -> the evaluator
    (0.0, "accept", 0),       # -9 %: decisive accept, never sent to the evaluator
    (0.3, "reject", 0),       # +18 %: decisive reject, never sent to the evaluator
], ids=["borderline", "accept", "reject"])
def test_only_borderline_reaches_the_evaluator(workspace: Workspace, second: float,
                                               verdict: str, judged: int) -> None:
    evaluator = RecordingEvaluator(accept=False)
    session(workspace, ScriptPlanner([0.1, second]), iters=2, evaluator=evaluator)
    record = load_state(workspace.paths).runs[1]
    assert record.verdict == verdict and len(evaluator.judged) == judged
    assert record.decided_by == ("evaluator" if judged else "rules")


def test_finished_run_without_verdict_is_evaluated_not_retrained(workspace: Workspace) -> None:
    executor = CallableExecutor(train_by_dropout)
    with pytest.raises(RuntimeError):
        session(workspace, ScriptPlanner([0.1], crash_after_launch=True), 3, executor=executor)
    assert load_state(workspace.paths).runs[0].verdict is None
    planner = ScriptPlanner([0.2, 0.3])
    session(workspace, planner, iters=3, executor=executor)
    state = load_state(workspace.paths)
    assert len(executor.requests) == 3 and state.runs[0].accepted is True
    assert planner.finished == ["run_0000", "run_0001", "run_0002"]


def test_ctrl_c_during_training_stops_cleanly_and_iteration_is_redone(
        workspace: Workspace) -> None:
    def interrupted(request: TrainRequest) -> TrainOutcome:
        raise KeyboardInterrupt

    result = session(workspace, ScriptPlanner([0.1]), 2, executor=CallableExecutor(interrupted))
    state = load_state(workspace.paths)
    assert result.stopped_by == "interrupted"  # type: ignore[attr-defined]
    assert state.iteration == 0 and state.current is None
    assert state.runs[0].status is RunStatus.INTERRUPTED
    session(workspace, ScriptPlanner([0.1, 0.2]), iters=2)
    state = load_state(workspace.paths)
    assert state.iteration == 2 and [r.run_id for r in state.runs if r.verdict] == [
        "run_0001", "run_0002"]


def test_training_finished_before_the_stop_is_kept_not_redone(workspace: Workspace) -> None:
    """The trainer wrote metrics.json, then the session stopped before saving the run."""
    def finished_then_interrupted(request: TrainRequest) -> TrainOutcome:
        train_by_dropout(request)
        raise KeyboardInterrupt

    result = session(workspace, ScriptPlanner([0.1]), 2,
                     executor=CallableExecutor(finished_then_interrupted))
    assert result.stopped_by == "interrupted"  # type: ignore[attr-defined]
    executor = CallableExecutor(train_by_dropout)
    session(workspace, ScriptPlanner([0.2]), iters=2, executor=executor)
    state = load_state(workspace.paths)
    assert [(r.run_id, r.status, r.val_mse, r.accepted) for r in state.runs] == [
        ("run_0000", RunStatus.OK, 1.1, True), ("run_0001", RunStatus.OK, 1.2, False)]
    assert len(executor.requests) == 1  # only the second iteration trained again


def test_trainings_the_trainer_keeps_refusing_stop_the_session(workspace: Workspace) -> None:
    """A broken data file must not spend the budget: three refusals in a row."""
    def refusing(request: TrainRequest) -> TrainOutcome:
        return TrainOutcome(RunStatus.INVALID_CONFIG, "series.csv: no 'date' column", {}, 0.1, 2)

    result = session(workspace, ScriptPlanner([0.1, 0.2, 0.3, 0.4, 0.5]), 5,
                     executor=CallableExecutor(refusing))
    assert result.stopped_by == "trainings_failing"  # type: ignore[attr-defined]
    message = result.message  # type: ignore[attr-defined]
    assert "3 trainings in a row were refused by the trainer" in message
    assert "run_0002 invalid_config: series.csv: no 'date' column" in message
    assert load_state(workspace.paths).iteration == 3


def test_a_session_that_trained_nothing_says_so(workspace: Workspace) -> None:
    """Two iterations refused by the trainer (below the three-in-a-row stop) ended as a
    plain "budget" stop: the CLI printed "done" and exited 0 after a search of nothing."""
    def refusing(request: TrainRequest) -> TrainOutcome:
        return TrainOutcome(RunStatus.INVALID_CONFIG, "target column 'prize' not found", {},
                            0.1, 2)

    result = session(workspace, ScriptPlanner([0.1, 0.2]), 2,
                     executor=CallableExecutor(refusing))
    assert result.stopped_by == "budget" and result.searched_nothing  # type: ignore[attr-defined]
    assert "prize" in result.message  # type: ignore[attr-defined]
    result = session(workspace, ScriptPlanner([0.1]), 3)  # one training that worked
    assert not result.searched_nothing  # type: ignore[attr-defined]


def test_torn_accept_is_repaired(workspace: Workspace) -> None:
    session(workspace, ScriptPlanner([0.3]), iters=1)
    with pytest.raises(RuntimeError):  # the process dies after training run_0001
        session(workspace, ScriptPlanner([0.1], crash_after_launch=True), iters=3)
    better = (workspace.paths.run_dir("run_0001") / "config_used.py").read_text()
    workspace.paths.config.write_text(better)  # ... and after writing config.py
    executor = CallableExecutor(train_by_dropout)
    session(workspace, ScriptPlanner([0.2]), iters=3, executor=executor)
    state = load_state(workspace.paths)
    assert [r.accepted for r in state.runs] == [True, True, False]
    assert len(executor.requests) == 1  # run_0001 was judged, not retrained
    assert workspace.paths.config.read_text() == better
    assert not workspace.paths.candidate.exists()


def test_hand_edited_config_is_kept_and_a_bad_one_refused(workspace: Workspace) -> None:
    from informer_nas.errors import ConfigError

    session(workspace, ScriptPlanner([0.1]), iters=1)
    edited = workspace.paths.config.read_text() + "# my note\n"
    workspace.paths.config.write_text(edited)
    workspace.paths.candidate.write_text(edited)  # a stale candidate
    session(workspace, ScriptPlanner([0.4]), iters=2)
    assert workspace.paths.config.read_text() == edited
    assert not workspace.paths.candidate.exists()
    workspace.paths.config.write_text(edited + "import os\n")
    executor = CallableExecutor(train_by_dropout)
    with pytest.raises(ConfigError, match="import os"):
        session(workspace, ScriptPlanner([0.2]), iters=3, executor=executor)
    assert not executor.requests
    with pytest.raises(ConfigError, match="--repair` puts the incumbent run's config back"):
        Workspace.open(workspace.paths.root)  # there is one to put back


@pytest.mark.parametrize("change", ["rows-appended", "deleted", "other-cwd"])
def test_data_other_than_the_incumbents_is_refused(workspace: Workspace, tmp_path: Path,
                                                   change: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs on changed data were compared with the incumbent's scores on the old data (one
    was accepted as 54 % better): a session refuses to start, doctor says why."""
    from informer_nas.errors import ConfigError
    from informer_nas.informer.data_files import bundled_csv_path
    from informer_nas.nas_system.doctor import diagnose

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, rows in ((first, 3001), (second, 3501)):
        folder.mkdir()
        lines = bundled_csv_path().read_text().splitlines(keepends=True)[:rows]
        (folder / "mine.csv").write_text("".join(lines))
    monkeypatch.chdir(first)
    text = workspace.paths.config.read_text()
    text = text.replace('"path": None,', '"path": "mine.csv",')  # too short for split 'ett'
    workspace.paths.config.write_text(text.replace('"split": "ett",', '"split": "ratio",'))
    session(workspace, ScriptPlanner([0.1]), iters=1)
    assert load_state(workspace.paths).runs[0].data_digest.startswith("sha256:")
    if change == "rows-appended":
        (first / "mine.csv").write_text((second / "mine.csv").read_text())
    elif change == "deleted":
        (first / "mine.csv").unlink()
    else:  # the relative path now names the other directory's file
        monkeypatch.chdir(second)
    executor = CallableExecutor(train_by_dropout)
    expected = "is missing" if change == "deleted" else "not the one the incumbent run_0000"
    with pytest.raises(ConfigError, match=expected):
        session(workspace, ScriptPlanner([0.2]), iters=2, executor=executor)
    assert not executor.requests
    report = diagnose(workspace.paths.root)
    assert any(f.severity == "error" and f.subject == "data" for f in report.findings)
    # --repair cannot put data back: it is not suggested
    assert report.lines()[-1].endswith("the advice above says what to do by hand")


@pytest.mark.parametrize(("old", "new", "key"), [
    ('"pred_len": 12,', '"pred_len": 24,', "data.pred_len"),
    ('"target": "OT",', '"target": "HUFL",', "data.target"),
    ('"split": "ett",', '"split": "ratio",', "data.split"),
    ('"freq": "h",', '"freq": "t",', "data.freq"),
    ('"max_eval_windows": 128,', '"max_eval_windows": 16,', "training.max_eval_windows"),
], ids=["pred_len", "target", "split", "freq", "eval-windows"])
def test_hand_edit_of_the_task_is_refused(workspace: Workspace, old: str, new: str,
                                          key: str) -> None:
    """Runs of another task would be compared with the incumbent's: refused, nothing run."""
    from informer_nas.errors import ConfigError
    from informer_nas.nas_system.doctor import diagnose

    session(workspace, ScriptPlanner([0.1]), iters=1)
    text = workspace.paths.config.read_text()
    assert old in text
    workspace.paths.config.write_text(text.replace(old, new))
    executor = CallableExecutor(train_by_dropout)
    with pytest.raises(ConfigError, match=f"task is fixed for a workspace, but {key}"):
        session(workspace, ScriptPlanner([0.2]), iters=2, executor=executor)
    assert not executor.requests
    report = diagnose(workspace.paths.root, repair=True)
    assert any(f.severity == "error" and key in f.problem for f in report.findings)
    assert workspace.paths.config.read_text() == text  # restored; the edit kept in a backup
    session(workspace, ScriptPlanner([0.2]), iters=2, executor=executor)
    assert len(executor.requests) == 1


def test_iters_below_one_is_refused(workspace: Workspace) -> None:
    from informer_nas.errors import ConfigError

    with pytest.raises(ConfigError, match="--iters"):
        session(workspace, ScriptPlanner([]), iters=0)


@dataclass
class MeteredPlanner(ScriptPlanner):
    """A ScriptPlanner whose 'model' spends 10 planner tokens per iteration."""

    def plan_iteration(self, ctx: ToolContext, budget: Budget) -> PlannerOutcome:
        usage = ctx.state.usage.setdefault("planner", RoleUsage())
        usage.requests += 1
        usage.input_tokens += 10
        return super().plan_iteration(ctx, budget)


def test_each_session_records_its_own_usage(workspace: Workspace) -> None:
    for number, (dropouts, iters) in enumerate((([0.1], 1), ([0.2, 0.3], 3))):
        info = SessionInfo(session_id=f"s{number}", started_at="t", planner="script",
                           trace_file=f"traces/s{number}.jsonl")
        run_session(workspace, MeteredPlanner(dropouts), RecordingEvaluator(), SessionSettings(),
                    CallableExecutor(train_by_dropout), iters, session=info)
    state = load_state(workspace.paths)
    assert [s.usage["planner"].input_tokens for s in state.sessions] == [10, 20]
    assert (state.usage["planner"].requests, state.usage["planner"].input_tokens) == (3, 30)


def test_confirmation_seeds_need_a_confirm_function(workspace: Workspace) -> None:
    from informer_nas.errors import ConfigError

    confirmed: list[tuple[str, int]] = []

    def confirm(ctx: ToolContext, run_id: str, seeds: int) -> None:
        confirmed.append((run_id, seeds))

    settings = SessionSettings(confirm_seeds=2)
    with pytest.raises(ConfigError, match="confirm=ensure_seeds"):
        run_session(workspace, ScriptPlanner([0.1]), RecordingEvaluator(), settings,
                    CallableExecutor(train_by_dropout), 1)
    run_session(workspace, ScriptPlanner([0.1, 0.0]), RecordingEvaluator(), settings,
                CallableExecutor(train_by_dropout), 2, confirm=confirm)
    assert confirmed == [("run_0001", 2), ("run_0000", 2)]  # candidate, then incumbent


def test_missing_accepted_config_names_the_workspace_to_repair(workspace: Workspace) -> None:
    from informer_nas.errors import ConfigError
    from informer_nas.nas_system.decision import accepted_config_text

    state = load_state(workspace.paths)
    ctx = ToolContext(workspace, state, SessionSettings(), CallableExecutor(train_by_dropout))
    record = RunRecord(run_id="run_0007", iteration=0, status=RunStatus.OK, val_mse=1.0)
    hint = re.escape(f"nas doctor --workspace {workspace.paths.root}")
    with pytest.raises(ConfigError, match=hint):
        accepted_config_text(ctx, record)
