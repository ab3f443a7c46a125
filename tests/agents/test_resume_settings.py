"""A resume (``planner=None``) continues with the previous session's planner and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_fakes import fake_train
from typer.testing import CliRunner

import informer_nas.api
from informer_nas.agents.trace import read_trace
from informer_nas.api import pruning_settings, run_nas_optimization
from informer_nas.cli import app
from informer_nas.errors import ConfigError
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.pruning import PruningSettings
from informer_nas.nas_system.session import SessionResult
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace


def last_header(root: Path) -> dict[str, Any]:
    session = load_state(Workspace.open(root).paths).sessions[-1]
    return read_trace(root / session.trace_file)[0]


def test_resume_keeps_planner_fallback_pruning_timeout_and_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    events: list[dict[str, Any]] = []
    run_nas_optimization(root, iters=1, planner="random", fallback="tpe", preset="tiny",
                         prune=False, prune_rule="percentile", prune_percentile=25,
                         timeout=90, keep_checkpoints="incumbent",
                         executor=CallableExecutor(fake_train), quiet=True)
    run_nas_optimization(root, iters=2, executor=CallableExecutor(fake_train), quiet=True,
                         observer=events.append)
    header = last_header(root)
    assert header["settings"]["keep_checkpoints"] == "incumbent"
    assert (header["planner"], header["fallback"]) == ("random", "tpe")
    assert header["settings"]["timeout_s"] == 90
    assert header["settings"]["prune"] is False
    assert header["settings"]["pruning"]["kind"] == "percentile"
    assert header["settings"]["pruning"]["percentile"] == 25
    assert load_state(Workspace.open(root).paths).planner == "random"
    assert events[0] == {"event": "session_start", "planner": "random", "fallback": "tpe",
                         "session_id": load_state(Workspace.open(root).paths).sessions[-1]
                         .session_id}


def test_an_explicit_planner_does_not_inherit_the_fallback(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    run_nas_optimization(root, iters=1, planner="random", fallback="tpe", preset="tiny",
                         executor=CallableExecutor(fake_train), quiet=True)
    run_nas_optimization(root, iters=2, planner="tpe", executor=CallableExecutor(fake_train),
                         quiet=True)
    assert (last_header(root)["planner"], last_header(root)["fallback"]) == ("tpe", None)


@pytest.mark.parametrize("rule, percentile, expected", [
    (None, None, PruningSettings()),
    ("percentile", 25.0, PruningSettings(kind="percentile", percentile=25.0)),
    (None, 75.0, PruningSettings(kind="percentile", percentile=75.0)),
    ("median", None, PruningSettings(kind="median")),
])
def test_pruning_options(rule: str | None, percentile: float | None,
                         expected: PruningSettings) -> None:
    assert pruning_settings(rule, percentile) == expected


def test_pruning_options_inherit_the_recorded_rule() -> None:
    recorded = {"kind": "percentile", "percentile": 30.0, "n_startup_runs": 5,
                "n_warmup_epochs": 2}
    assert pruning_settings(None, None, recorded) == PruningSettings(
        kind="percentile", percentile=30.0, n_startup_runs=5, n_warmup_epochs=2)
    assert pruning_settings("median", None, recorded).n_startup_runs == 5


@pytest.mark.parametrize("rule, percentile", [("median", 25.0), ("mean", None),
                                              ("percentile", 101.0)])
def test_bad_pruning_options_are_refused(rule: str, percentile: float | None) -> None:
    with pytest.raises(ConfigError):
        pruning_settings(rule, percentile)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """The CLI's calls of ``run_nas_optimization`` (which is replaced)."""
    recorded: list[dict[str, Any]] = []

    def fake_run(**kwargs: Any) -> SessionResult:
        recorded.append(kwargs)
        kwargs["observer"]({"event": "session_start", "planner": "random"})
        return SessionResult("interrupted", 0, 0, 1, None)

    monkeypatch.setattr(informer_nas.api, "run_nas_optimization", fake_run)
    monkeypatch.chdir(tmp_path)
    return recorded


def test_cli_prune_options_reach_the_api(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["run", "--iters", "2", "--planner", "tpe",
                                      "--prune-rule", "percentile", "--prune-percentile", "25"])
    assert result.exit_code == 130, result.output
    assert (calls[0]["prune_rule"], calls[0]["prune_percentile"]) == ("percentile", 25.0)


def test_cli_no_prune_with_a_prune_rule_is_refused(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["run", "--iters", "2", "--no-prune",
                                      "--prune-rule", "percentile"])
    assert result.exit_code == 2 and not calls
    assert result.stderr.strip().splitlines() == [
        "error: --no-prune turns pruning off; it excludes --prune-rule and --prune-percentile"]


def test_cli_preset_on_an_existing_workspace_is_noted(calls: list[dict[str, Any]],
                                                      tmp_path: Path) -> None:
    Workspace.create(tmp_path / "ws", "tiny")
    result = CliRunner().invoke(app, ["run", "--iters", "2", "--workspace",
                                      str(tmp_path / "ws"), "--preset", "paper"])
    assert "exists with preset tiny; --preset only sets up a new workspace" in result.stdout
    result = CliRunner().invoke(app, ["run", "--iters", "2", "--workspace", str(tmp_path / "ws")])
    assert "--preset" not in result.stdout and calls[-1]["preset"] == "quick"


def test_cli_resume_leaves_the_planner_to_the_api(calls: list[dict[str, Any]],
                                                  tmp_path: Path) -> None:
    run_nas_optimization(tmp_path / "ws", iters=1, planner="random", preset="tiny",
                         executor=CallableExecutor(fake_train), quiet=True)
    result = CliRunner().invoke(app, ["resume", "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 130, result.output
    assert "planner" not in calls[0] and "fallback" not in calls[0]


def test_cli_run_on_an_existing_workspace_keeps_its_planner_and_pruning(
        calls: list[dict[str, Any]], tmp_path: Path) -> None:
    root = tmp_path / "ws"
    run_nas_optimization(root, iters=1, planner="random", preset="tiny", prune=False,
                         executor=CallableExecutor(fake_train), quiet=True)
    result = CliRunner().invoke(app, ["run", "--iters", "3", "--workspace", str(root)])
    assert result.exit_code == 130, result.output
    assert "planner: random (the workspace's)" in result.output
    assert calls[0]["planner"] == "random" and calls[0]["prune"] is None  # inherited
    result = CliRunner().invoke(app, ["run", "--iters", "3", "--workspace", str(root),
                                      "--planner", "tpe", "--no-prune"])
    assert (calls[1]["planner"], calls[1]["prune"]) == ("tpe", False)


def test_kill_while_the_brain_is_built_keeps_budget_planner_and_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first session killed after its trace's header, before any iteration: the resume
    still knows the budget, the planner and the seed it was started with."""
    import informer_nas.agents.wiring as wiring

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    root = tmp_path / "ws"
    with monkeypatch.context() as patch:
        patch.setattr(wiring, "build_brain", killed)
        with pytest.raises(KeyboardInterrupt):
            run_nas_optimization(root, iters=3, planner="random", seed=7, preset="tiny",
                                 executor=CallableExecutor(fake_train), quiet=True)
    result = run_nas_optimization(root, executor=CallableExecutor(fake_train), quiet=True)
    assert (result.stopped_by, result.iteration, result.max_iterations) == ("budget", 3, 3)
    header = last_header(root)
    assert (header["planner"], header["settings"]["seed"]) == ("random", 7)


def test_budget_below_the_iterations_done_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    run_nas_optimization(root, iters=2, preset="tiny", executor=CallableExecutor(fake_train),
                         quiet=True)
    traces = sorted((root / "traces").iterdir())
    with pytest.raises(ConfigError, match="below the 2 iterations"):
        run_nas_optimization(root, iters=1, executor=CallableExecutor(fake_train), quiet=True)
    spent = run_nas_optimization(root, executor=CallableExecutor(fake_train), quiet=True)
    assert (spent.iterations_run, spent.iteration) == (0, 2)
    assert sorted((root / "traces").iterdir()) == traces  # nothing ran, nothing written
    assert load_state(Workspace.open(root).paths).max_iterations == 2


def test_damage_below_the_trace_header_keeps_the_settings(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    run_nas_optimization(root, iters=1, planner="random", seed=7, timeout=90, preset="tiny",
                         executor=CallableExecutor(fake_train), quiet=True)
    trace = next((root / "traces").glob("*.jsonl"))
    lines = trace.read_text().splitlines()
    trace.write_text("\n".join([lines[0], "{garbage", *lines[2:]]) + "\n")
    run_nas_optimization(root, iters=2, executor=CallableExecutor(fake_train), quiet=True)
    header = last_header(root)
    assert (header["planner"], header["settings"]["seed"]) == ("random", 7)
    assert header["settings"]["timeout_s"] == 90


@pytest.mark.parametrize("edit", ["task", "data"])
def test_a_refused_start_leaves_the_workspace_as_it_was(tmp_path: Path, edit: str) -> None:
    """A start refused for a hand edit of the task or a changed data file had already saved
    the new budget and planner and written a trace: the next plain resume then ran the
    refused command's planner."""
    from informer_nas.informer.data_files import bundled_csv_path

    data = tmp_path / "mine.csv"
    data.write_text("".join(bundled_csv_path().read_text().splitlines(keepends=True)[:3001]))
    root = tmp_path / "ws"
    Workspace.create(root, "tiny", data)
    run_nas_optimization(root, iters=1, planner="tpe", executor=CallableExecutor(fake_train),
                         quiet=True)
    paths = Workspace.open(root).paths
    before = (paths.state.read_bytes(), sorted(paths.traces.iterdir()))
    if edit == "task":
        text = paths.config.read_text()
        paths.config.write_text(text.replace('"split": "ratio"', '"split": "ett"'))
    else:
        data.write_text(data.read_text().replace("2016-07-01 00:00:00,5.827", "2016-07-01 "
                                                  "00:00:00,6.827"))
    with pytest.raises(ConfigError):
        run_nas_optimization(root, iters=9, planner="random",
                             executor=CallableExecutor(fake_train), quiet=True)
    assert (paths.state.read_bytes(), sorted(paths.traces.iterdir())) == before
    state = load_state(paths)
    assert (state.max_iterations, state.planner, len(state.sessions)) == (1, "tpe", 1)


@pytest.mark.parametrize("planner", ["tpe", "random"])
def test_a_workspace_that_cannot_be_written_stops_the_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planner: str) -> None:
    """A read-only workspace spent every iteration as "planning failure: Error running tool
    edit_config: [Errno 1] Operation not permitted" and ended "done", exit 0. The session
    stops on the machine's error instead; the iteration is left for the resume."""
    import errno

    import informer_nas.tools.edit_config as edit_module

    root = tmp_path / "ws"
    run_nas_optimization(root, iters=1, planner=planner, preset="tiny",
                         executor=CallableExecutor(fake_train), quiet=True)

    def read_only(path: Path, text: str, **_: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(edit_module, "atomic_write_text", read_only)
        with pytest.raises(PermissionError):
            run_nas_optimization(root, iters=3, executor=CallableExecutor(fake_train),
                                 quiet=True)
    assert load_state(Workspace.open(root).paths).iteration == 1  # nothing spent
    result = run_nas_optimization(root, iters=3, executor=CallableExecutor(fake_train),
                                  quiet=True)
    assert result.iterations_run == 2 and len(load_state(Workspace.open(root).paths).runs) == 3


@pytest.mark.parametrize(("arguments", "message"), [
    ({"iters": 0}, "iters must be >= 1"),
    ({"iters": 2, "planner": "foo"}, "unknown brain 'foo' for --planner"),
    ({"iters": 2, "fallback": "bar"}, "unknown brain 'bar' for --fallback"),
], ids=["iters", "planner", "fallback"])
def test_refused_arguments_create_no_workspace(tmp_path: Path, arguments: dict[str, Any],
                                               message: str) -> None:
    """The API created the workspace (config.py, state, lock) before refusing them."""
    with pytest.raises(ConfigError, match=message):
        run_nas_optimization(tmp_path / "ws", preset="tiny", quiet=True,
                             executor=CallableExecutor(fake_train), **arguments)
    assert not (tmp_path / "ws").exists()
