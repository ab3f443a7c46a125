"""The plain tools exposed to the agents as SDK function tools.

Each wrapper is ``async`` on purpose: it runs the plain tool in the event loop's (main)
thread, where the training executor can install its SIGINT/SIGTERM forwarding (the SDK
would run a sync tool in a worker thread). Each call is recorded in the trace with its
arguments and result. A ``NasError`` (or bad arguments) reaches the model as
``ERROR: <message>`` so that it can correct a bad edit; our own bugs still raise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.exceptions import ModelBehaviorError
from agents.function_schema import function_schema
from pydantic import BaseModel, StrictInt, ValidationError  # strict: true is not 1

from informer_nas.agents.provider import Binding
from informer_nas.errors import ConfigError, EnvironmentFailure, NasError, ReplayDivergence
from informer_nas.informer.config import format_validation_error, without_pydantic_prefix
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.records import CONFIG_VALUE_ERROR, ConfigChange

TOOL_ERROR_PREFIX = "ERROR: "
INVALID_ARGUMENTS = "Invalid JSON input for tool "
RUN_ID_ARGUMENTS = '{"run_id": "run_0003"}'
EXPECTED_ARGUMENTS = {
    "edit_config": ('a JSON object {"changes": [{"key": "model.dropout", "value": 0.1}, ...], '
                    '"rationale": "why"}: changes is a list of objects with a dotted key and '
                    'its new value'),
    "launch_training": 'a JSON object {"seed": null} (or an integer seed)',
    "read_history": 'a JSON object {"last_n": 5}',
    "get_config": "an empty JSON object {}",
    "summarize_curve": f"a JSON object {RUN_ID_ARGUMENTS}",
    "run_metrics": f"a JSON object {RUN_ID_ARGUMENTS}",
    "check_failure": f"a JSON object {RUN_ID_ARGUMENTS}",
    "check_improvement": f"a JSON object {RUN_ID_ARGUMENTS}",
    "check_overfitting": f"a JSON object {RUN_ID_ARGUMENTS}",
}


def tool_error_message(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """The failure message a model sees: the exception's own (actionable) message.

    Arguments that are not valid JSON for the tool (the SDK's ``ModelBehaviorError``
    "Invalid JSON input for tool X") get what the tool expects appended.
    """
    if isinstance(error, ReplayDivergence | EnvironmentFailure):
        raise error  # a replay stops at its first divergence, a session when the machine
        # cannot serve it: neither is for the model to act on
    if isinstance(error, ModelBehaviorError):
        message = str(error)
        if message.startswith(INVALID_ARGUMENTS) and ":" not in message[len(INVALID_ARGUMENTS):]:
            message += argument_problem(ctx)
        return f"{TOOL_ERROR_PREFIX}{invalid_arguments_message(message)}"
    if isinstance(error, ValidationError):
        return f"{TOOL_ERROR_PREFIX}{format_validation_error(error)}"
    if isinstance(error, NasError):
        return f"{TOOL_ERROR_PREFIX}{error}"
    raise error


# Each tool's argument model (the SDK's own, from the function's signature): the SDK says
# only "Invalid JSON input for tool X"; validating again names the field that failed.
_ARGUMENT_MODELS: dict[str, type[BaseModel]] = {}


def argument_problem(ctx: Any) -> str:
    """``: <field>: <what is wrong>`` for the arguments of the failed call ("" if unknown)."""
    model = _ARGUMENT_MODELS.get(str(getattr(ctx, "tool_name", "")))
    arguments = getattr(ctx, "tool_arguments", None)
    if model is None or not isinstance(arguments, str):
        return ""
    try:
        data = json.loads(arguments or "{}")
        model.model_validate(data if isinstance(data, dict) else {})
    except json.JSONDecodeError as exc:
        return f": not valid JSON ({exc.msg} at character {exc.pos})"
    except ValidationError as exc:
        first = exc.errors()[0]
        refusal = _value_refusal(ctx, data) if first["type"] == CONFIG_VALUE_ERROR else ""
        if refusal:  # a change's value that is no config value: what its key takes
            return f": {refusal}"
        where = ".".join(str(part) for part in first["loc"]) or "arguments"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f": {where}: {without_pydantic_prefix(first['msg'])}{more}"
    return ""


def _value_refusal(ctx: Any, arguments: dict[str, Any]) -> str:
    """edit_config's own refusal of ``arguments["changes"]``, naming the key and the values
    it takes ("" when there is none, or no workspace to read the search space from)."""
    from informer_nas.tools.edit_config import validate_changes

    context = getattr(ctx, "context", None)
    if not isinstance(context, ToolContext):
        return ""
    try:
        space = context.workspace.search_space(context.state)
    except NasError:  # config.py broken meanwhile: the generic problem is said instead
        return ""
    try:
        validate_changes(arguments.get("changes"), space)
    except NasError as exc:
        return str(exc)
    return ""


def invalid_arguments_message(message: str) -> str:
    """``message``, plus the arguments the tool expects when they were invalid."""
    if not message.startswith(INVALID_ARGUMENTS):
        return message
    name = message[len(INVALID_ARGUMENTS):].split(":", 1)[0].strip()
    expected = EXPECTED_ARGUMENTS.get(name)
    if expected is None:
        return message
    return f"{message}; {name} expects {expected}; call it again with valid arguments"


async def _call(binding: Binding, role: str, name: str, args: dict[str, Any],
                run: Callable[[], str]) -> str:
    started = time.monotonic()
    recorder = binding.recorder
    try:
        result = run()
    except Exception as exc:
        if recorder is not None:
            recorder.write("tool", role=role, name=name, args=args, result=str(exc),
                           is_error=True, seconds=round(time.monotonic() - started, 4))
        raise
    if recorder is not None:
        recorder.write("tool", role=role, name=name, args=args, result=result, is_error=False,
                       seconds=round(time.monotonic() - started, 4))
    return result


def _next_step(ctx: ToolContext, role: str) -> str:
    """What a model should do instead of reading the same thing again."""
    if role == "evaluator":
        return "answer with your verdict: accept, reason and feedback"
    current = ctx.state.current
    if current is not None and current.launched_run_id:
        return "answer with your decision (step_type, plan, reason)"
    return ("call edit_config with your changes, then launch_training (or answer with "
            "step_type stop)")


async def _read(binding: Binding, ctx: ToolContext, role: str, name: str, args: dict[str, Any],
                run: Callable[[], str]) -> str:
    """``_call`` for a read-only tool: the same result twice in one agent run is refused
    with the next step, so that a model looping on reads is told before its turns run out."""
    def read_once() -> str:
        key = json.dumps([role, name, args], sort_keys=True)
        result = run()
        if binding.reads.get(key) == result:
            raise ConfigError(f"{name} with these arguments already returned this in this "
                              f"iteration and nothing has changed since; {_next_step(ctx, role)}")
        binding.reads[key] = result
        return result

    return await _call(binding, role, name, args, read_once)


ToolFactory = Callable[[Binding, str], FunctionTool]


def _make(function: Callable[..., Awaitable[str]], name: str) -> FunctionTool:
    if name not in _ARGUMENT_MODELS:
        _ARGUMENT_MODELS[name] = function_schema(function, name_override=name).params_pydantic_model
    return function_tool(function, name_override=name, failure_error_function=tool_error_message)


def read_history_tool(binding: Binding, role: str) -> FunctionTool:
    from informer_nas.tools.read_history import read_history

    async def read_history_(wrapper: RunContextWrapper[ToolContext], last_n: StrictInt) -> str:
        """Read the incumbent and the last runs: changes, metrics, verdicts, curve summaries.

        Args:
            last_n: how many recent runs to include (e.g. 5).
        """
        return await _read(binding, wrapper.context, role, "read_history", {"last_n": last_n},
                           lambda: read_history(wrapper.context, last_n=last_n))

    return _make(read_history_, "read_history")


def get_config_tool(binding: Binding, role: str) -> FunctionTool:
    from informer_nas.tools.get_config import get_config

    async def get_config_(wrapper: RunContextWrapper[ToolContext]) -> str:
        """Read the current config as JSON (the candidate if an edit is in progress)."""
        return await _read(binding, wrapper.context, role, "get_config", {},
                           lambda: get_config(wrapper.context))

    return _make(get_config_, "get_config")


def edit_config_tool(binding: Binding, role: str) -> FunctionTool:
    from informer_nas.tools.edit_config import edit_config

    async def edit_config_(wrapper: RunContextWrapper[ToolContext], changes: list[ConfigChange],
                           rationale: str) -> str:
        """Change the candidate config; returns a unified diff, or an error saying what to fix.

        Args:
            changes: a list of {key, value} edits; keys are dotted (e.g. "model.d_model").
            rationale: why these changes should improve validation MSE.
        """
        args = {"changes": [c.model_dump() for c in changes], "rationale": rationale}
        return await _call(binding, role, "edit_config", args,
                           lambda: edit_config(wrapper.context, changes, rationale))

    return _make(edit_config_, "edit_config")


def launch_training_tool(binding: Binding, role: str) -> FunctionTool:
    from informer_nas.tools.launch_training import launch_training

    async def launch_training_(wrapper: RunContextWrapper[ToolContext],
                               seed: StrictInt | None) -> str:
        """Train the candidate config (once per iteration) and return its metrics as JSON.

        Args:
            seed: the training seed; null for the session's seed.
        """
        return await _call(binding, role, "launch_training", {"seed": seed},
                           lambda: launch_training(wrapper.context, seed=seed))

    return _make(launch_training_, "launch_training")


def summarize_curve_tool(binding: Binding, role: str) -> FunctionTool:
    from informer_nas.tools.summarize_curve import summarize_curve

    async def summarize_curve_(wrapper: RunContextWrapper[ToolContext], run_id: str) -> str:
        """Learning dynamics of a run: best epoch, train/val gap and trend, plateau, noise.

        Args:
            run_id: a run id of this workspace, e.g. "run_0003", or one of its confirmation
                seeds, e.g. "run_0003/seed_7"; not a path.
        """
        return await _read(binding, wrapper.context, role, "summarize_curve", {"run_id": run_id},
                           lambda: summarize_curve(wrapper.context, run_id))

    return _make(summarize_curve_, "summarize_curve")


def run_metrics_tool(binding: Binding, role: str) -> FunctionTool:
    from informer_nas.nas_system.runs import find_run

    async def run_metrics_(wrapper: RunContextWrapper[ToolContext], run_id: str) -> str:
        """A run's metrics: status, val/test MSE and MAE, every seed's results.

        Args:
            run_id: the run, e.g. "run_0003".
        """
        def read() -> str:
            record = find_run(wrapper.context.state, run_id)
            fields = ("run_id", "status", "status_reason", "val_mse", "val_mae", "test_mse",
                      "test_mae", "mean_val_mse", "seed", "seeds", "changes")
            return json.dumps(record.model_dump(mode="json", include=set(fields)))

        return await _read(binding, wrapper.context, role, "run_metrics", {"run_id": run_id},
                           read)

    return _make(run_metrics_, "run_metrics")


def rule_tool(binding: Binding, role: str, rule: str) -> FunctionTool:
    """``check_failure`` / ``check_improvement`` / ``check_overfitting`` of tools/rules.py."""
    from informer_nas.tools import rules

    function = getattr(rules, rule)

    async def check_(wrapper: RunContextWrapper[ToolContext], run_id: str) -> str:
        """Apply one gate rule to a run.

        Args:
            run_id: the run, e.g. "run_0003".
        """
        return await _read(binding, wrapper.context, role, rule, {"run_id": run_id},
                           lambda: str(function(wrapper.context, run_id)))

    doc = (function.__doc__ or "").strip().splitlines()
    tool = _make(check_, rule)
    tool.description = doc[0] if doc else f"Apply the gate rule {rule} to a run."
    return tool


def planner_tools(binding: Binding) -> list[FunctionTool]:
    """read_history, get_config, summarize_curve, edit_config, launch_training."""
    role = "planner"
    return [read_history_tool(binding, role), get_config_tool(binding, role),
            summarize_curve_tool(binding, role), edit_config_tool(binding, role),
            launch_training_tool(binding, role)]


def evaluator_tools(binding: Binding) -> list[FunctionTool]:
    """The rule tools, summarize_curve and the run's metrics."""
    role = "evaluator"
    return [rule_tool(binding, role, "check_failure"),
            rule_tool(binding, role, "check_improvement"),
            rule_tool(binding, role, "check_overfitting"),
            summarize_curve_tool(binding, role), run_metrics_tool(binding, role)]
