"""Planner and evaluator flows with scripted models (agents.testing.ScriptedModel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import fake_train
from agents import RunContextWrapper
from agents.testing import ScriptedModel, assistant_message, function_call
from pydantic import ValidationError

from informer_nas.agents.evaluator import AgentEvaluator
from informer_nas.agents.function_tools import tool_error_message
from informer_nas.agents.planner import AgentPlanner
from informer_nas.agents.policy import PolicyEvaluator
from informer_nas.agents.provider import Binding, recording_provider
from informer_nas.nas_system.brain import Budget, PlannerOutcome
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.gate import GateThresholds
from informer_nas.nas_system.records import ConfigChange
from informer_nas.nas_system.session import run_session
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.edit_config import edit_config
from informer_nas.tools.launch_training import launch_training

DECISION = json.dumps({"step_type": "small", "plan": "lower dropout", "reason": "test"})


def call(name: str, arguments: Any, number: int) -> Any:
    return function_call(name, arguments, call_id=f"call_{number}")


def valid_steps(start: int = 0) -> list[Any]:
    """read_history -> edit_config -> launch_training -> decision."""
    return [
        [call("read_history", {"last_n": 5}, start)],
        [call("edit_config", {"changes": [{"key": "model.dropout", "value": 0.2}],
                              "rationale": "regularise"}, start + 1)],
        [call("launch_training", {"seed": None}, start + 2)],
        [assistant_message(DECISION)],
    ]


def run_planner(workspace: Workspace, model: ScriptedModel, iters: int = 1,
                max_turns: int = 12) -> Any:
    binding = Binding()
    planner = AgentPlanner("llm", recording_provider({"planner": model}, binding), binding)
    return run_session(workspace, planner, PolicyEvaluator(), SessionSettings(max_turns=max_turns),
                       CallableExecutor(fake_train), iters)


def tool_output(model: ScriptedModel, call_index: int) -> str:
    """The last tool output the model saw in call ``call_index``."""
    last = model.calls[call_index].input[-1]
    assert last["type"] == "function_call_output"
    return str(last["output"])


def test_valid_run_records_the_decision(workspace: Workspace) -> None:
    model = ScriptedModel(valid_steps())
    run_planner(workspace, model)
    record = load_state(workspace.paths).runs[0]
    assert (record.step_type, record.plan, record.accepted) == ("small", "lower dropout", True)
    assert record.changes == [ConfigChange(key="model.dropout", value=0.2)]
    assert len(model.calls) == 4 and model.remaining_steps == 0


@pytest.mark.parametrize(("bad_call", "expected"), [
    # invalid arguments: a string where a list of changes belongs
    ({"changes": "model.dropout=0.2", "rationale": "x"}, "ERROR: Invalid JSON input"),
    # unknown key: the message names the key and suggests the right one
    ({"changes": [{"key": "model.d_modle", "value": 32}], "rationale": "x"}, "model.d_model"),
    # out of range value: the message gives the rule
    ({"changes": [{"key": "model.dropout", "value": 3.0}], "rationale": "x"}, "out of range"),
    # a dict as a value: the key and its choices, not one pydantic error per type it is not
    ({"changes": [{"key": "model.attn", "value": {"a": 1}}], "rationale": "x"},
     "edit_config: model.attn = {'a': 1} refused: must be one of 'prob', 'full'; e.g."),
], ids=["invalid-arguments", "unknown-key", "out-of-range", "dict-value"])
def test_tool_errors_reach_the_model(workspace: Workspace, bad_call: dict[str, Any],
                                     expected: str) -> None:
    model = ScriptedModel([[call("edit_config", bad_call, 90)], *valid_steps()])
    run_planner(workspace, model)
    seen = tool_output(model, 1)
    assert seen.startswith("ERROR: ") and expected in seen
    assert model.remaining_steps == 0 and load_state(workspace.paths).runs[0].accepted


@pytest.mark.parametrize(("bad_call", "named"), [
    ({"changes": [{"key": "model.dropout", "value": 0.2}]}, "rationale: Field required"),
    ({"changes": [{"key": "model.dropout", "value": 0.2}], "rationale": 5},
     "rationale: Input should be a valid string"),
    ({"changes": [{"key": "model.dropout", "value": 0.2, "why": "x"}], "rationale": "x"},
     "changes.0.why: Extra inputs are not permitted"),
    ({"changes": [{"key": 5, "value": 0.2}], "rationale": "x"},
     "changes.0.key: Input should be a valid string"),
], ids=["missing", "wrong-type", "extra-key", "key-type"])
def test_invalid_arguments_name_the_field_that_failed(workspace: Workspace,
                                                      bad_call: dict[str, Any],
                                                      named: str) -> None:
    """The SDK says only "Invalid JSON input for tool edit_config": the model is told which
    field failed and why, so that it can correct the call."""
    model = ScriptedModel([[call("edit_config", bad_call, 90)], *valid_steps()])
    run_planner(workspace, model)
    seen = tool_output(model, 1)
    assert seen.startswith(f"ERROR: Invalid JSON input for tool edit_config: {named}"), seen
    assert "call it again with valid arguments" in seen
    assert model.remaining_steps == 0


@pytest.mark.parametrize(("tool", "arguments"), [
    ("read_history", {"last_n": True}), ("launch_training", {"seed": True})])
def test_a_boolean_is_not_taken_for_a_number(workspace: Workspace, tool: str,
                                             arguments: dict[str, Any]) -> None:
    """true was read as 1 (a training launched with seed 1): refused, the field named."""
    model = ScriptedModel([[call(tool, arguments, 90)], *valid_steps()])
    run_planner(workspace, model)
    field = next(iter(arguments))
    assert tool_output(model, 1).startswith(
        f"ERROR: Invalid JSON input for tool {tool}: {field}: Input should be a valid integer")
    assert [r.seed for r in load_state(workspace.paths).runs] != [1]


def test_unknown_tool_name_is_reported_to_the_model(workspace: Workspace) -> None:
    model = ScriptedModel([[call("delete_workspace", {}, 90)], *valid_steps()])
    run_planner(workspace, model)
    assert "there is no tool 'delete_workspace'" in tool_output(model, 1)
    assert model.remaining_steps == 0


def test_turn_limit_is_a_planning_failure_and_the_session_goes_on(
        workspace: Workspace) -> None:
    looping = [[call("read_history", {"last_n": 1}, n)] for n in range(4)]
    model = ScriptedModel([*looping, *valid_steps(10)])
    result = run_planner(workspace, model, iters=2, max_turns=4)
    state = load_state(workspace.paths)
    assert result.stopped_by == "budget" and state.iteration == 2
    assert len(state.runs) == 1 and state.runs[0].iteration == 2  # the first made no run
    assert model.remaining_steps == 0


class ScriptPlanner:
    """A planner without a model: baseline dropout 0.1, then a near-identical candidate."""

    name = "script"

    def __init__(self) -> None:
        self.dropouts = [0.1, 0.09]

    def plan_iteration(self, ctx: ToolContext, budget: Budget) -> PlannerOutcome:
        edit_config(ctx, [ConfigChange(key="model.dropout", value=self.dropouts.pop(0))], "t")
        launch_training(ctx)
        return PlannerOutcome("small", "p", "r")

    def finish_iteration(self, ctx: ToolContext, record: object) -> None:
        return None


def run_evaluator(workspace: Workspace, model: ScriptedModel, max_turns: int = 8) -> Any:
    binding = Binding()
    evaluator = AgentEvaluator(recording_provider({"evaluator": model}, binding), binding,
                               max_turns=max_turns)
    # A wide borderline band: any change within +-50 % goes to the evaluator.
    settings = SessionSettings(thresholds=GateThresholds(accept_improvement=0.5,
                                                         reject_degradation=0.5))
    run_session(workspace, ScriptPlanner(), evaluator, settings, CallableExecutor(fake_train), 2)
    return load_state(workspace.paths).runs[1]


def test_evaluator_judges_a_borderline_through_its_tools(workspace: Workspace) -> None:
    verdict = {"accept": True, "reason": "better on every seed", "feedback": "try less"}
    model = ScriptedModel([
        [call("run_metrics", {"run_id": "run_0001"}, 1)],
        [call("check_improvement", {"run_id": "run_0001"}, 2)],
        [assistant_message(json.dumps(verdict))],
    ])
    record = run_evaluator(workspace, model)
    assert (record.verdict, record.accepted, record.decided_by) == (
        "borderline", True, "evaluator")
    assert "better on every seed" in record.verdict_reason
    assert json.loads(tool_output(model, 1))["run_id"] == "run_0001"
    assert model.remaining_steps == 0


@pytest.mark.parametrize("run_id", ["OUTSIDE", "..", ""], ids=["absolute-path", "parent",
                                                               "empty"])
def test_evaluator_summarize_curve_refuses_paths(workspace: Workspace, tmp_path: Path,
                                                 run_id: str) -> None:
    """summarize_curve takes run ids of the state only: a path (even to a real
    history.json outside the workspace) is an unknown run, reported with the known ids."""
    outside = tmp_path / "somewhere" / "fakerun"
    outside.mkdir(parents=True)
    (outside / "history.json").write_text(json.dumps({"epochs": [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "val_mse": 0.5}]}))
    asked = str(outside) if run_id == "OUTSIDE" else run_id
    verdict = {"accept": False, "reason": "no evidence", "feedback": "-"}
    model = ScriptedModel([
        [call("summarize_curve", {"run_id": asked}, 1)],
        [call("summarize_curve", {"run_id": "run_0001"}, 2)],
        [assistant_message(json.dumps(verdict))],
    ])
    run_evaluator(workspace, model)
    seen = tool_output(model, 1)
    assert seen.startswith(f"ERROR: unknown run {asked!r}"), seen
    assert "known runs: run_0000, run_0001" in seen
    assert json.loads(tool_output(model, 2))["run_id"] == "run_0001"
    assert model.remaining_steps == 0


@pytest.mark.parametrize(("answer", "problem"), [
    # a well-formed object without the expected fields: the missing ones are named
    ({"verdict": 3}, "missing accept, reason, feedback (it has verdict)"),
    # one field left out
    ({"accept": True, "reason": "better"}, "missing feedback"),
    # a field of the wrong type
    ({"accept": "maybe", "reason": "x", "feedback": "y"}, "accept: Input should be a valid "
                                                          "boolean"),
    # not an object at all
    (["accept", True], "it is a list, not an object"),
], ids=["other-fields", "missing-field", "wrong-type", "list"])
def test_evaluator_answer_of_the_wrong_shape_names_the_field(
        workspace: Workspace, answer: Any, problem: str) -> None:
    """Valid JSON that is not the decision was reported as "Invalid JSON when parsing model
    output": the reason now says which field did not match; the policy still decides."""
    model = ScriptedModel([[assistant_message(json.dumps(answer))]])
    record = run_evaluator(workspace, model)
    assert record.decided_by == "policy" and record.verdict == "borderline"
    assert ("evaluator failed (the evaluator's answer did not match the expected fields "
            f"(accept, reason, feedback): {problem}") in record.verdict_reason
    assert "Invalid JSON" not in record.verdict_reason and "\n" not in record.verdict_reason
    assert model.remaining_steps == 0


def test_evaluator_turn_limit_falls_back_to_the_policy(workspace: Workspace) -> None:
    model = ScriptedModel([[call("run_metrics", {"run_id": "run_0001"}, n)] for n in range(2)])
    record = run_evaluator(workspace, model, max_turns=2)
    assert record.decided_by == "policy" and "evaluator failed" in record.verdict_reason


def test_unknown_tool_message_lists_the_agents_own_tools() -> None:
    """The evaluator asking for launch_training is told its own tools, not the planner's."""
    from agents import RunContextWrapper
    from agents.run_config import ToolErrorFormatterArgs

    from informer_nas.agents.evaluator import build_evaluator_agent
    from informer_nas.agents.planner import build_planner_agent, tool_error_formatter, tool_names
    from informer_nas.agents.provider import Binding

    def message(agent_tools: list[str]) -> str | None:
        args = ToolErrorFormatterArgs(kind="tool_not_found", tool_type="function",
                                      tool_name="launch_training", call_id="c1",
                                      default_message="", run_context=RunContextWrapper(None))
        return tool_error_formatter(agent_tools)(args)

    evaluator = tool_names(build_evaluator_agent(Binding()))
    planner = tool_names(build_planner_agent(Binding()))
    assert "launch_training" in planner and "launch_training" not in evaluator
    text = message(evaluator) or ""
    assert text.startswith("ERROR: there is no tool 'launch_training'; use ")
    assert all(name in text for name in evaluator) and text.count("launch_training") == 1


def test_a_validation_error_raised_by_a_tool_reaches_the_model_as_one_line() -> None:
    """The model saw pydantic's report: "2 validation errors for ConfigChange", a line per
    field and a URL per error."""
    with pytest.raises(ValidationError) as caught:
        ConfigChange.model_validate({"key": 1})
    assert tool_error_message(RunContextWrapper(None), caught.value) == (
        "ERROR: key: Input should be a valid string (got 1); value: Field required")
