"""``--keep-checkpoints incumbent``: only the incumbent (and a run awaiting its verdict)
keeps ``best_model.pt``; every other file of every run stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_session import RecordingEvaluator, ScriptPlanner, train_by_dropout
from typer.testing import CliRunner

from informer_nas.cli import app
from informer_nas.errors import ConfigError
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.session import run_session
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace

CHECKPOINT = "best_model.pt"


def train_with_checkpoint(request: TrainRequest) -> TrainOutcome:
    """The stub trainer of ``test_session`` plus a checkpoint, as the trainer writes one."""
    outcome = train_by_dropout(request)
    (request.run_dir / CHECKPOINT).write_bytes(b"weights" * 100)
    return outcome


def run(workspace: Workspace, dropouts: list[float | None], iters: int,
        keep: str = "incumbent", crash: bool = False) -> None:
    run_session(workspace, ScriptPlanner(dropouts, crash_after_launch=crash),
                RecordingEvaluator(accept=False), SessionSettings(keep_checkpoints=keep),
                CallableExecutor(train_with_checkpoint), iters)


def with_checkpoint(workspace: Workspace) -> list[str]:
    return sorted(path.parent.name for path in workspace.paths.root.glob(f"runs/*/{CHECKPOINT}"))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws", "tiny")


def test_only_the_incumbent_keeps_its_checkpoint(workspace: Workspace) -> None:
    # val MSE = 1 + dropout: 0.1 is accepted, 0.3 rejected, 0.02 accepted, 0.4 rejected
    run(workspace, [0.1, 0.3, 0.02, 0.4], iters=4)
    state = load_state(workspace.paths)
    assert [r.accepted for r in state.runs] == [True, False, True, False]
    assert state.incumbent_run_id == "run_0002"
    assert with_checkpoint(workspace) == ["run_0002"]
    for run_id in ("run_0000", "run_0001", "run_0003"):  # the rest of each run stays
        run_dir = workspace.paths.run_dir(run_id)
        assert {"metrics.json", "history.json", "config_used.py"} <= {
            p.name for p in run_dir.iterdir()}


def test_by_default_every_run_keeps_its_checkpoint(workspace: Workspace) -> None:
    run(workspace, [0.1, 0.3, 0.02], iters=3, keep="all")
    assert with_checkpoint(workspace) == ["run_0000", "run_0001", "run_0002"]


def test_confirmation_seeds_checkpoints_go_with_their_run(workspace: Workspace) -> None:
    run(workspace, [0.1, 0.3], iters=2, keep="all")
    seed_dir = workspace.paths.run_dir("run_0001") / "seed_11"
    seed_dir.mkdir()
    (seed_dir / CHECKPOINT).write_bytes(b"seed weights")
    (seed_dir / "metrics.json").write_text("{}")
    run(workspace, [0.5], iters=3)
    assert with_checkpoint(workspace) == ["run_0000"]
    assert not (seed_dir / CHECKPOINT).exists() and (seed_dir / "metrics.json").exists()


def test_switching_it_on_clears_earlier_sessions_runs_at_the_start(
        workspace: Workspace) -> None:
    run(workspace, [0.1, 0.3, 0.02], iters=3, keep="all")
    run(workspace, [None], iters=5)  # the planner stops at once: no verdict in this session
    assert with_checkpoint(workspace) == ["run_0002"]


def test_a_run_awaiting_its_verdict_keeps_its_checkpoint(workspace: Workspace) -> None:
    run(workspace, [0.1], iters=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(workspace, [0.3], iters=2, crash=True)  # trained, then killed before judging
    assert with_checkpoint(workspace) == ["run_0000", "run_0001"]
    pending = load_state(workspace.paths).current
    assert pending is not None and pending.launched_run_id == "run_0001"
    # the next session's start keeps it; its verdict (reject: 1.3 > 1.1) removes it
    run(workspace, [], iters=2)
    state = load_state(workspace.paths)
    assert state.runs[1].accepted is False and with_checkpoint(workspace) == ["run_0000"]


def test_an_unknown_setting_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="keep_checkpoints must be one of all, incumbent"):
        SessionSettings(keep_checkpoints="best")  # type: ignore[arg-type]


def test_the_cli_option_names_its_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--iters", "1", "--workspace", str(tmp_path / "w"),
                                      "--keep-checkpoints", "best"])
    assert result.exit_code == 2 and "all" in result.output and "incumbent" in result.output
    assert not (tmp_path / "w").exists()
