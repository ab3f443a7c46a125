"""The hybrid brain: TPE proposes, a scripted LLM reviewer keeps or overrides the proposal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from agent_fakes import fake_train
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

import informer_nas.agents.brains.llm as llm_module
from informer_nas.agents.brains.study_sampler import STUDY_NAME
from informer_nas.agents.replay import replay_trace
from informer_nas.agents.trace import read_trace
from informer_nas.api import run_nas_optimization
from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.gate import GateThresholds
from informer_nas.nas_system.search_space import flatten
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.status import run_table_rows, workspace_status
from informer_nas.nas_system.workspace import Workspace

PROPOSAL = re.compile(r"proposes these changes to the incumbent \(trial \d+\):\n(.*)\n")
OVERRIDE = [{"key": "model.dropout", "value": 0.5}]


def prompt_text(call: ModelCall) -> str:
    """The iteration's prompt: the first user message of the call."""
    if isinstance(call.input, str):
        return call.input
    content = next(item["content"] for item in call.input if item.get("role") == "user")
    return content if isinstance(content, str) else json.dumps(content)


def keep_proposal(call: ModelCall) -> list[Any]:
    """The reviewer keeps TPE's proposal: edit_config with exactly its changes."""
    match = PROPOSAL.search(prompt_text(call))
    assert match, prompt_text(call)
    arguments = {"changes": json.loads(match.group(1)), "rationale": "the proposal looks sound"}
    return [function_call("edit_config", arguments, call_id="call_keep")]


def decision(step_type: str, plan: str) -> Any:
    return assistant_message(json.dumps({"step_type": step_type, "plan": plan, "reason": "test"}))


def keep_baseline(call: ModelCall) -> list[Any]:
    """The reviewer keeps the baseline (the starting config): launch without an edit."""
    assert "proposes the starting config itself" in prompt_text(call), prompt_text(call)
    return [function_call("launch_training", {"seed": None}, call_id="call_0")]


def reviewer_script() -> list[Any]:
    """Iteration 1 keeps the baseline, iteration 2 TPE's proposal; iteration 3 overrides
    the proposal with its own edit."""
    return [
        ModelStep.respond(keep_baseline),
        [decision("small", "keep the baseline")],
        ModelStep.respond(keep_proposal),
        [function_call("launch_training", {"seed": None}, call_id="call_1")],
        [decision("small", "keep TPE's proposal")],
        [function_call("edit_config", {"changes": OVERRIDE, "rationale": "more dropout"},
                       call_id="call_2")],
        [function_call("launch_training", {"seed": None}, call_id="call_3")],
        [decision("small", "override: dropout 0.5")],
    ]


def study_trials(root: Path) -> list[FrozenTrial]:
    """The study's trials, without the samples refused by a config rule."""
    storage = JournalStorage(JournalFileBackend(str(root / "study.journal")))
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    return [t for t in study.get_trials() if "invalid" not in t.user_attrs]


def rounded(changes: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Changes as (key, value), floats to 9 digits (edit_config writes 12)."""
    return [(c["key"], float(f"{c['value']:.9g}") if isinstance(c["value"], float)
             else c["value"]) for c in changes]


def trained_params(root: Path, run_id: str, keys: set[str]) -> dict[str, Any]:
    flat = flatten(read_config_literal(root / "runs" / run_id / "config_used.py"))
    return {k: v for k, v in flat.items() if k in keys}


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, ScriptedModel]:
    """A 3-iteration hybrid session with the scripted reviewer; returns its root and model."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("NAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # never contacted
    usage = Usage(requests=1, input_tokens=50, output_tokens=5)
    reviewer = ScriptedModel(reviewer_script(), default_usage=usage)
    evaluator = ScriptedModel([], default_usage=usage)  # the gate decides every iteration
    monkeypatch.setattr(llm_module, "llm_models",
                        lambda settings, client=None: {"planner": reviewer,
                                                       "evaluator": evaluator})
    root = tmp_path / "recorded"
    result = run_nas_optimization(root, iters=3, planner="hybrid", preset="tiny", seed=3,
                                  executor=CallableExecutor(fake_train), quiet=True)
    assert result.stopped_by == "budget" and reviewer.remaining_steps == 0
    return root, reviewer


def test_study_sees_the_kept_and_the_overridden_trials(
        recorded: tuple[Path, ScriptedModel]) -> None:
    root, _ = recorded
    state = load_state(Workspace.open(root).paths)
    baseline_run, kept_run, override_run = state.runs
    trials = study_trials(root)
    baseline, kept, overridden, actual = trials
    keys = set(kept.params)
    # The baseline: the starting config, trained unedited and told with its run's value.
    start = flatten(read_config_literal(root / "runs" / baseline_run.run_id / "config_used.py"))
    assert baseline_run.changes == [] and baseline.number == 0
    assert baseline.state == TrialState.COMPLETE and baseline.value == baseline_run.val_mse
    assert baseline.params == {k: start[k] for k in keys}
    # Kept: the proposal itself was trained and told with its run's value.
    assert kept.state == TrialState.COMPLETE and kept.user_attrs["run_id"] == kept_run.run_id
    assert kept.value == kept_run.val_mse
    assert kept.params == pytest.approx(trained_params(root, kept_run.run_id, keys))
    # Overridden: the proposal is FAIL (never trained); the study sees the values trained.
    assert overridden.state == TrialState.FAIL and overridden.user_attrs["overridden"] is True
    assert overridden.params["model.dropout"] != 0.5
    assert actual.state == TrialState.COMPLETE and actual.value == override_run.val_mse
    assert actual.user_attrs["run_id"] == override_run.run_id
    assert actual.params == pytest.approx(trained_params(root, override_run.run_id, keys))
    assert actual.params["model.dropout"] == 0.5


def test_runs_record_whether_the_proposal_was_kept(recorded: tuple[Path, ScriptedModel]) -> None:
    root, _ = recorded
    state = load_state(Workspace.open(root).paths)
    assert [run.proposal for run in state.runs] == ["kept", "kept", "overridden"]
    rows = run_table_rows(workspace_status(Workspace.open(root), state)["runs"])
    assert [row[2] for row in rows] == ["small (TPE)", "small (TPE)", "small (LLM)"]


def test_decisions_are_traced_and_replay_identically(
        recorded: tuple[Path, ScriptedModel], tmp_path: Path) -> None:
    root, reviewer = recorded
    trace = next((root / "traces").glob("*.jsonl"))
    records = read_trace(trace)
    edits = [r["args"] for r in records if r["kind"] == "tool" and r["name"] == "edit_config"]
    match = PROPOSAL.search(prompt_text(reviewer.calls[2]))
    assert match is not None
    proposed = json.loads(match.group(1))
    assert [e["changes"] for e in edits] == [proposed, OVERRIDE]
    plans = [r["plan"] for r in records if r["kind"] == "event" and r["name"] == "plan"]
    assert plans == ["keep the baseline", "keep TPE's proposal", "override: dropout 0.5"]
    verdicts = [r for r in records if r["kind"] == "event" and r["name"] == "verdict"]
    assert [rounded(v["changes"]) for v in verdicts] == [
        [], rounded(proposed), rounded(OVERRIDE)]
    assert all(v["decided_by"] == "rules" for v in verdicts)

    report = replay_trace(trace, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert report.iterations == 3
    replayed = [(t.number, t.state, t.value, t.params) for t in study_trials(report.workspace)]
    assert replayed == [(t.number, t.state, t.value, t.params) for t in study_trials(root)]


def test_session_usage_is_recorded_per_session(recorded: tuple[Path, ScriptedModel]) -> None:
    root, _ = recorded
    state = load_state(Workspace.open(root).paths)
    (session,) = state.sessions
    assert session.usage["planner"] == state.usage["planner"]
    assert (session.usage["planner"].requests, session.usage["planner"].input_tokens) == (8, 400)
    assert "evaluator" not in session.usage


def keep_proposals(count: int) -> list[Any]:
    """The reviewer keeps TPE's proposal ``count`` iterations in a row."""
    steps: list[Any] = []
    for index in range(count):
        steps += [ModelStep.respond(keep_proposal),
                  [function_call("launch_training", {"seed": None}, call_id=f"call_{index}")],
                  [decision("small", "keep TPE's proposal")]]
    return steps


NO_BORDERLINE = GateThresholds(accept_improvement=0.0, reject_degradation=0.0)  # no evaluator


def test_resumed_session_replays_identically(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The second session's prompts carry the proposals of a study that already holds the
    first session's trials: the replay starts from that study, not an empty one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # never contacted
    root = tmp_path / "recorded"
    scripts = [[ModelStep.respond(keep_baseline), [decision("small", "keep the baseline")],
                *keep_proposals(1)], keep_proposals(2)]
    for iters, script in zip((2, 4), scripts, strict=True):
        reviewer = ScriptedModel(script)
        monkeypatch.setattr(llm_module, "llm_models", lambda settings, client=None, m=reviewer: {
            "planner": m, "evaluator": ScriptedModel([])})
        result = run_nas_optimization(root, iters=iters, planner="hybrid", preset="tiny",
                                      seed=3, executor=CallableExecutor(fake_train), quiet=True,
                                      thresholds=NO_BORDERLINE)
        assert result.stopped_by == "budget" and reviewer.remaining_steps == 0
    second = sorted((root / "traces").glob("*.jsonl"))[-1]
    report = replay_trace(second, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert report.iterations == 2


def test_a_proposal_equal_to_the_incumbent_asks_for_a_launch_without_an_edit(
        tmp_path: Path) -> None:
    """TPE re-samples the incumbent (common in a narrow space): the prompt must not ask for
    an edit_config with no changes, which edit_config refuses."""
    from types import SimpleNamespace

    from informer_nas.agents.brains.hybrid import hybrid_prompt
    from informer_nas.agents.brains.study import Proposal
    from informer_nas.nas_system.brain import Budget

    workspace = Workspace.create(tmp_path / "ws", "tiny")
    proposal = Proposal(trial_number=4, params={"model.dropout": 0.05}, changes=[],
                        sampler_seed=1, completed_trials=0)
    brain = SimpleNamespace(propose=lambda state, config: proposal)
    ctx = SimpleNamespace(state=None, workspace=workspace)
    text = hybrid_prompt(brain)(ctx, Budget(2, 3))  # type: ignore[arg-type]
    assert "proposes the incumbent config itself, unchanged (trial 4)" in text
    assert "launch the training without calling edit_config" in text
    assert "[]" not in text


def test_the_proposal_shows_the_incumbent_values_it_replaces(tmp_path: Path) -> None:
    """To review a proposal the LLM needs each key's value now, not only the new one (the
    best configs list TPE's trials, which need not include the incumbent's values)."""
    from types import SimpleNamespace

    from informer_nas.agents.brains.hybrid import hybrid_prompt
    from informer_nas.agents.brains.study import Proposal
    from informer_nas.nas_system.brain import Budget
    from informer_nas.nas_system.records import ConfigChange

    workspace = Workspace.create(tmp_path / "ws", "tiny")
    incumbent = flatten(read_config_literal(workspace.paths.config))
    changes = [ConfigChange(key="model.dropout", value=0.3),
               ConfigChange(key="training.optimizer_params.lr", value=0.002)]
    proposal = Proposal(trial_number=4, params={}, changes=changes, sampler_seed=1,
                        completed_trials=0)
    brain = SimpleNamespace(propose=lambda state, config: proposal)
    ctx = SimpleNamespace(state=None, workspace=workspace)
    text = hybrid_prompt(brain)(ctx, Budget(2, 3))  # type: ignore[arg-type]
    now = {key: incumbent[key] for key in ("model.dropout", "training.optimizer_params.lr")}
    assert f"The incumbent's values of these keys now: {json.dumps(now)}" in text, text
    match = PROPOSAL.search(text)  # the proposal line itself is unchanged (kept verbatim)
    assert match and json.loads(match.group(1)) == [c.model_dump() for c in changes]
