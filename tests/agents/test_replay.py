"""Record then replay: identical decisions, state and config; a changed prompt diverges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import fake_train, pruning_fake_train
from agents.exceptions import AgentsException, ModelBehaviorError, ModelTimeoutError
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

import informer_nas.agents.planner as planner_module
from informer_nas.agents.brains.replay import ReplayModel
from informer_nas.agents.provider import Binding, ModelRequest, RecordingModel, run_async
from informer_nas.agents.replay import replay_trace
from informer_nas.agents.trace import TRACE_VERSION, TraceRecorder, read_trace
from informer_nas.api import run_nas_optimization
from informer_nas.errors import ReplayDivergence
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.records import RunStatus
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A 3-iteration tpe session with confirmation seeds; returns its trace."""
    root = tmp_path / "recorded"
    run_nas_optimization(root, iters=3, planner="tpe", preset="tiny", confirm_seeds=1,
                         executor=CallableExecutor(fake_train), quiet=True)
    return next((root / "traces").glob("*.jsonl"))


def decisions(root: Path) -> list[tuple[str, str | None, bool | None, float | None]]:
    state = load_state(Workspace.open(root).paths)
    return [(r.run_id, r.verdict, r.accepted, r.val_mse) for r in state.runs]


def test_replay_is_identical(recorded: Path, tmp_path: Path) -> None:
    report = replay_trace(recorded, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert report.iterations == 3 and "identical" in report.summary()
    original = recorded.parent.parent
    assert decisions(tmp_path / "replayed") == decisions(original)
    assert (tmp_path / "replayed" / "config.py").read_text() == (original / "config.py").read_text()


def test_offline_planner_makes_no_llm_requests(recorded: Path) -> None:
    """TPE answers the planner's turns itself: no request, no tokens (status said 15
    requests for a session that never reached a network)."""
    from informer_nas.nas_system.status import usage_line, usage_summary

    state = load_state(Workspace.open(recorded.parent.parent).paths)
    total = usage_summary(state.usage)["total"]
    assert (total["requests"], total["input_tokens"], total["output_tokens"]) == (0, 0, 0)
    assert usage_line(total).startswith("no requests")


def test_replay_with_retraining_is_identical(recorded: Path, tmp_path: Path) -> None:
    executor = CallableExecutor(fake_train)
    report = replay_trace(recorded, tmp_path / "retrained", retrain=True, executor=executor)
    assert report.identical, report.divergence
    assert executor.requests  # the trainer really ran again


def test_changed_prompt_is_reported_as_divergence(recorded: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    changed = planner_module.PLANNER_INSTRUCTIONS + "\nPrefer wide models."
    monkeypatch.setattr(planner_module, "PLANNER_INSTRUCTIONS", changed)
    report = replay_trace(recorded, tmp_path / "diverged")
    assert not report.identical
    assert report.divergence == (
        "planner step 0: the system instructions (prompt) differ from the recorded session")


def test_divergence_of_a_trace_from_another_version_says_so(
        recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trace recorded before the prompts or tool outputs changed diverges at its first
    request; the message says it comes from another version (it named only the step)."""
    lines = recorded.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["version"] == TRACE_VERSION
    older = tmp_path / "older" / "traces" / recorded.name
    older.parent.mkdir(parents=True)
    older.write_text("\n".join([json.dumps({**header, "version": TRACE_VERSION - 1}),
                                *lines[1:]]) + "\n", encoding="utf-8")
    monkeypatch.setattr(planner_module, "PLANNER_INSTRUCTIONS",
                        planner_module.PLANNER_INSTRUCTIONS + "\nPrefer wide models.")
    report = replay_trace(older, tmp_path / "replayed")
    assert not report.identical and report.divergence is not None
    assert report.divergence.startswith("planner step 0: the system instructions (prompt) "
                                        "differ from the recorded session")
    assert (f"trace version {TRACE_VERSION - 1}, this one is {TRACE_VERSION}"
            in report.divergence)


def test_trace_holds_every_step_and_no_secret(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    root = tmp_path / "ws"
    (tmp_path / "ws").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENROUTER_API_KEY='or-secret-abcdefgh'\n")
    run_nas_optimization(root, iters=1, planner="tpe", preset="tiny",
                         executor=CallableExecutor(fake_train), quiet=True)
    trace = next((root / "traces").glob("*.jsonl"))
    records = read_trace(trace)
    kinds = [r["kind"] for r in records]
    # Iteration 1 is the baseline, the starting config: launched without an edit.
    assert kinds[0] == "header" and kinds.count("model") == 3 and kinds.count("train") == 1
    assert [r["name"] for r in records if r["kind"] == "tool"] == [
        "read_history", "launch_training"]
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert secret.encode() not in text and b"or-secret-abcdefgh" not in text, path
    assert json.loads(trace.read_text().splitlines()[-1])["kind"] == "usage"


def test_truncated_last_line_is_tolerated(recorded: Path) -> None:
    text = recorded.read_text()
    recorded.write_text(text + '{"kind": "model", "tru')
    assert read_trace(recorded)[-1]["kind"] == "usage"


def test_replay_prunes_with_the_recorded_rule(tmp_path: Path) -> None:
    """The header records the pruning rule; a replay that retrains applies the same one."""
    root = tmp_path / "recorded"
    run_nas_optimization(root, iters=7, planner="tpe", preset="tiny", prune_rule="percentile",
                         prune_percentile=10, executor=CallableExecutor(pruning_fake_train),
                         quiet=True)
    trace = next((root / "traces").glob("*.jsonl"))
    header = read_trace(trace)[0]
    assert header["settings"]["pruning"] == {"kind": "percentile", "percentile": 10,
                                             "n_startup_runs": 3, "n_warmup_epochs": 1}
    statuses = [r.status.value for r in load_state(Workspace.open(root).paths).runs]
    assert "pruned" in statuses  # the 10th percentile prunes more than the median would
    executor = CallableExecutor(pruning_fake_train)
    report = replay_trace(trace, tmp_path / "replayed", retrain=True, executor=executor)
    assert report.identical, report.divergence


def test_session_stopped_early_replays_identically(tmp_path: Path) -> None:
    """Ctrl+C in the second of three iterations: the replay covers the committed one, with
    the budget the prompts named (3), not the number of committed iterations."""
    trainings = 0

    def interrupted_second(request: TrainRequest) -> TrainOutcome:
        nonlocal trainings
        trainings += 1
        if trainings == 2:
            raise KeyboardInterrupt
        return fake_train(request)

    root = tmp_path / "recorded"
    result = run_nas_optimization(root, iters=3, planner="tpe", preset="tiny",
                                  executor=CallableExecutor(interrupted_second), quiet=True)
    assert (result.stopped_by, result.iteration) == ("interrupted", 1)
    report = replay_trace(next((root / "traces").glob("*.jsonl")), tmp_path / "replayed")
    assert report.identical, report.divergence
    assert report.iterations == 1


def test_resumed_session_replays_identically(tmp_path: Path) -> None:
    """A resumed session's launches are pruned against the earlier sessions' runs: the
    replay reads those runs' curves from the trace's workspace."""
    root = tmp_path / "recorded"
    for iters in (4, 7):
        run_nas_optimization(root, iters=iters, planner="tpe", preset="tiny",
                             prune_rule="percentile", prune_percentile=10,
                             executor=CallableExecutor(pruning_fake_train), quiet=True)
    second = sorted((root / "traces").glob("*.jsonl"))[-1]
    statuses = [r.status.value for r in load_state(Workspace.open(root).paths).runs[4:]]
    assert "pruned" in statuses  # the second session's pruning used the first one's runs
    report = replay_trace(second, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert report.iterations == 3


def test_failure_naming_a_workspace_file_replays_identically(tmp_path: Path) -> None:
    """A trainer's reason names candidate.py by its absolute path: the replay, in another
    directory, must hand the model the same words about its own file."""
    def refused_second(request: TrainRequest) -> TrainOutcome:
        if request.run_dir.name == "run_0001":
            return TrainOutcome(RunStatus.INVALID_CONFIG,
                                f"{request.config_path}: training.seed is out of range", {},
                                0.01, 2)
        return fake_train(request)

    root = tmp_path / "recorded"
    run_nas_optimization(root, iters=3, planner="tpe", preset="tiny",
                         executor=CallableExecutor(refused_second), quiet=True)
    trace = next((root / "traces").glob("*.jsonl"))
    refused = [r["outcome"]["reason"] for r in read_trace(trace) if r["kind"] == "train"
               and r["outcome"]["status"] == "invalid_config"]
    assert refused == ["<workspace>/candidate.py: training.seed is out of range"]
    report = replay_trace(trace, tmp_path / "replayed")
    assert report.identical, report.divergence
    reason = load_state(Workspace.open(tmp_path / "replayed").paths).runs[1].status_reason
    assert reason.startswith(str((tmp_path / "replayed").resolve()))


@pytest.fixture
def own_data_session(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace on a copy of ETTh1, run for one session then resumed for a second;
    returns (the data file, the second session's trace)."""
    from informer_nas.informer.data_files import bundled_csv_path

    data = tmp_path / "data" / "series.csv"
    data.parent.mkdir()
    data.write_bytes(bundled_csv_path().read_bytes())
    root = tmp_path / "recorded"
    Workspace.create(root, "tiny", data)
    for iters in (1, 2):
        run_nas_optimization(root, iters=iters, planner="tpe", executor=CallableExecutor(
            fake_train), quiet=True)
    traces = sorted((root / "traces").glob("*.jsonl"))
    assert len(traces) == 2
    return data, traces[-1]


def test_sessions_note_their_data_file_in_the_trace(own_data_session: tuple[Path, Path]) -> None:
    from informer_nas.informer.data_files import file_digest

    data, trace = own_data_session
    assert read_trace(trace)[0]["data_digest"] == file_digest(data)


def test_replay_without_retraining_needs_no_data_file(own_data_session: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """Recorded results stand for the trainings: a resumed session replays where its data
    file is absent (it stopped at the data check: 'data file ... is missing')."""
    data, trace = own_data_session
    data.unlink()
    report = replay_trace(trace, tmp_path / "replayed")
    assert report.identical, report.divergence


@pytest.mark.parametrize("change", ["missing", "edited"])
def test_replay_with_retraining_refuses_other_data_before_writing(
        change: str, own_data_session: tuple[Path, Path], tmp_path: Path) -> None:
    from informer_nas.errors import ConfigError

    data, trace = own_data_session
    if change == "missing":
        data.unlink()
    else:
        data.write_text(data.read_text() + data.read_text().splitlines()[-1] + "\n")
    executor = CallableExecutor(fake_train)
    with pytest.raises(ConfigError) as refused:
        replay_trace(trace, tmp_path / "retrained", retrain=True, executor=executor)
    message = str(refused.value)
    assert str(data) in message and "replay without --retrain" in message
    assert ("missing" in message) == (change == "missing")
    assert not (tmp_path / "retrained").exists() and not executor.requests


def ask(model: Model) -> object:
    """One request to ``model``: its response, or the exception it raised."""
    request = ModelRequest("plan", "iteration 1", ModelSettings(), [], None, [],
                           ModelTracing.DISABLED)
    try:
        return run_async(request.send(model))
    except Exception as exc:
        return exc


class Cancelled(asyncio.CancelledError, Exception):
    """A cancellation that is also an ``Exception``, as the Agents SDK raises some."""


# What each failure of a model call is raised again as in the replay (its kind).
FAILED_CALLS: dict[str, tuple[Exception, type[Exception]]] = {
    # an answer the SDK cannot use: a planning failure quoting its words
    "model-behavior": (ModelBehaviorError("ChatCompletion response has no choices"),
                       ModelBehaviorError),
    # another SDK error: handled as any AgentsException, by its words
    "agents": (ModelTimeoutError(5.0), AgentsException),
    # anything else ended the recorded session: the replay names it as its divergence
    "error": (RuntimeError("model crashed"), ReplayDivergence),
}


@pytest.mark.parametrize("failure", sorted(FAILED_CALLS))
def test_failed_call_is_traced_and_raised_again_at_its_step(failure: str,
                                                            tmp_path: Path) -> None:
    error, replayed_as = FAILED_CALLS[failure]
    recorder = TraceRecorder(tmp_path / "trace.jsonl", tmp_path)
    scripted = ScriptedModel([ModelStep.raise_error(error)])
    recording = RecordingModel(scripted, "planner", Binding(recorder=recorder))
    assert ask(recording) is error
    scripted.enqueue(Cancelled())  # an interrupt, not traced: the iteration is redone
    assert isinstance(ask(recording), Cancelled)
    scripted.enqueue(ModelStep(output=[assistant_message("answer")]))
    answered = ask(recording)
    recorder.close()
    records = [json.loads(line) for line in recorder.path.read_text().splitlines()]
    errors = [r for r in records if r["kind"] == "model_error"]
    assert [(r["step"], r["error_type"]) for r in errors] == [(0, type(error).__name__)]
    replay = ReplayModel("planner", [r for r in records if r["kind"] == "model"],
                         str(tmp_path), errors=errors)
    replayed = ask(replay)
    assert type(replayed) is replayed_as
    assert (str(error) in str(replayed)) if failure == "error" else str(replayed) == str(error)
    assert getattr(ask(replay), "output", None) == getattr(answered, "output", ())


def test_iterations_without_a_candidate_count_as_replayed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An iteration the planner ends without launching is an iteration (``nas status``
    counts it in the budget): the replay reproduces it and counts it, and says how many of
    its iterations trained (it said '1 iteration(s) matched' for this 2-iteration session)."""
    from typer.testing import CliRunner

    import informer_nas.agents.brains.llm as llm_module
    from informer_nas.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # never contacted
    decision = assistant_message(json.dumps({"step_type": "small", "plan": "p", "reason": "r"}))
    planner = ScriptedModel([
        [function_call("launch_training", {"seed": None}, call_id="call_0")], [decision],
        [decision],  # iteration 2: a decision without a launch, no candidate to judge
    ])
    monkeypatch.setattr(llm_module, "llm_models", lambda settings, client=None: {
        "planner": planner, "evaluator": ScriptedModel([])})
    root = tmp_path / "recorded"
    result = run_nas_optimization(root, iters=2, planner="llm", preset="tiny",
                                  executor=CallableExecutor(fake_train), quiet=True)
    assert (result.iteration, result.wasted_iterations) == (2, 1)
    trace = next((root / "traces").glob("*.jsonl"))
    report = replay_trace(trace, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert (report.iterations, report.trained) == (2, 1)
    replayed = CliRunner().invoke(app, ["replay", str(trace), "-w", str(tmp_path / "again")])
    assert replayed.exit_code == 0, replayed.output
    assert "2 iterations matched" in replayed.output
    assert "1 trained a candidate, 1 ended without one" in replayed.output


def stop_at(event_name: str, nth: int = 1) -> Callable[[dict[str, Any]], None]:
    """An observer that stops the session (as Ctrl+C does) at the ``nth`` ``event_name``."""
    seen = 0

    def observe(event: dict[str, Any]) -> None:
        nonlocal seen
        if event.get("event") == event_name:
            seen += 1
            if seen == nth:
                raise KeyboardInterrupt

    return observe


def test_session_stopped_before_its_pending_verdict_replays_identically(tmp_path: Path) -> None:
    """A session stopped before it judged the run an earlier session left finished without
    a verdict committed nothing: its replay ends where it ended (it judged that run and
    reported '1 iteration replayed, 0 recorded', exit 1)."""
    root = tmp_path / "recorded"
    executor = CallableExecutor(fake_train)
    first = run_nas_optimization(root, iters=3, planner="tpe", preset="tiny", executor=executor,
                                 quiet=True, observer=stop_at("plan", nth=2))
    assert first.stopped_by == "interrupted"
    assert load_state(Workspace.open(root).paths).current is not None  # run_0001: no verdict
    for stop in (stop_at("resume_evaluation"), None):  # stopped before the verdict, then not
        run_nas_optimization(root, planner="tpe", executor=executor, quiet=True, observer=stop)
        trace = sorted((root / "traces").glob("*.jsonl"))[-1]
        report = replay_trace(trace, tmp_path / f"replayed_{stop is None}")
        assert report.identical, report.divergence
    assert report.iterations == 2  # the resumed session judged run_0001, then trained one
    assert decisions(tmp_path / "replayed_True") == decisions(root)
