"""The planner agent and ``AgentPlanner``, the session's ``Planner`` built on it.

The agent drives one iteration through the tools: read the history, edit the candidate,
launch one training, then answer with a ``PlannerDecision``. Whatever brain sits behind
the ``planner`` role (an LLM, TPE, a recorded trace), the agent, its tools and its turn
limit are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from agents import (
    Agent,
    FunctionTool,
    RunConfig,
    RunContextWrapper,
    RunErrorHandlerInput,
    RunErrorHandlers,
    Runner,
    ToolCallItem,
    ToolCallOutputItem,
)
from agents.exceptions import AgentsException, MaxTurnsExceeded, ModelBehaviorError
from agents.run_config import ToolErrorFormatterArgs
from agents.run_error_handlers import RunErrorData
from pydantic import BaseModel, ValidationError

from informer_nas.agents.function_tools import TOOL_ERROR_PREFIX, planner_tools
from informer_nas.agents.provider import Binding, RoleModelProvider, run_async
from informer_nas.errors import EnvironmentFailure, ReplayDivergence
from informer_nas.nas_system.brain import BrainUnavailable, Budget, PlannerOutcome
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.search_space import describe_space
from informer_nas.tools.edit_config import MAX_RATIONALE
from informer_nas.tools.launch_training import MACHINE_ERRNOS

logger = logging.getLogger(__name__)

PLANNER_INSTRUCTIONS = """\
You tune an Informer model that forecasts the ETT electricity-transformer series
(multivariate, hourly). The goal is the lowest validation MSE. Each iteration you propose
one candidate config, train it once, and a rule gate compares it with the incumbent.

Each iteration:
1. Call read_history (and summarize_curve on interesting runs) to see what was tried.
2. Call edit_config with a list of {{key, value}} changes and a rationale. If it returns
   an ERROR, read the message, fix the change and call it again.
3. Call launch_training once (seed null). It can be called only once per iteration.
4. Answer with the decision: step_type, plan (what you changed and what you expect) and
   reason (the evidence behind it).

Step types: "small" (hyper-parameters: lr, dropout, weight decay, batch size, epochs,
patience), "medium" (architecture: layers, widths, heads, attention, distilling, look-back),
"radical" (optimizer, loss, scheduler or normalisation switch), "stop" (nothing left worth
trying: answer stop without launching).

{space}

The gate: a candidate is accepted when its val MSE beats the incumbent's by more than
{accept:.1%}; rejected when it is worse by more than {reject:.1%}, when it overfits (val loss
rising for {overfit_epochs} epochs while the train loss falls) or when its run failed;
in between it is borderline and judged separately. Differences of a few percent are
often seed noise. {confirm}

Budget: iteration {iteration} of {max_iterations}; {remaining} left including this one.
"""


class PlannerDecision(BaseModel):
    """The planner's answer at the end of an iteration (a JSON object, not wrapped)."""

    step_type: Literal["small", "medium", "radical", "stop"]
    plan: str
    reason: str


def planner_instructions(wrapper: RunContextWrapper[ToolContext], agent: Any) -> str:
    """The instructions with the workspace's space, thresholds and budget filled in."""
    ctx = wrapper.context
    state = ctx.state
    thresholds = ctx.settings.thresholds
    iteration = state.current.iteration if state.current else state.iteration + 1
    confirm = (f"Accepting or borderline candidates are retrained with "
               f"{ctx.settings.confirm_seeds} more seeds." if ctx.settings.confirm_seeds else "")
    return PLANNER_INSTRUCTIONS.format(
        space=describe_space(ctx.workspace.search_space(state)),
        accept=thresholds.accept_improvement, reject=thresholds.reject_degradation,
        overfit_epochs=thresholds.overfit_epochs, confirm=confirm, iteration=iteration,
        max_iterations=state.max_iterations, remaining=state.max_iterations - iteration + 1,
    )


def build_planner_agent(binding: Binding) -> Agent[ToolContext]:
    """The planner ``Agent`` (model name ``planner``, resolved by the role provider)."""
    return Agent[ToolContext](
        name="planner",
        instructions=planner_instructions,
        model="planner",
        tools=list(planner_tools(binding)),
        output_type=PlannerDecision,
    )


def tool_names(agent: Agent[Any]) -> list[str]:
    """The names of an agent's function tools, for messages to its model."""
    return [tool.name for tool in agent.tools if isinstance(tool, FunctionTool)]


def tool_error_formatter(tools: Sequence[str]) -> Callable[[ToolErrorFormatterArgs[Any]],
                                                           str | None]:
    """Model-visible text for an unknown tool name, listing the agent's own ``tools`` (other
    errors keep their own text)."""
    def format_tool_error(args: ToolErrorFormatterArgs[Any]) -> str | None:
        if args.kind == "tool_not_found":
            return (f"{TOOL_ERROR_PREFIX}there is no tool {args.tool_name!r}; use "
                    f"{', '.join(tools[:-1])} or {tools[-1]}")
        return None

    return format_tool_error


def run_config(provider: RoleModelProvider, tools: Sequence[str],
               tracing: bool = False) -> RunConfig:
    """The run settings both agents share: our provider, unknown tools reported back with
    the agent's own ``tools``."""
    return RunConfig(
        model_provider=provider,
        tracing_disabled=not tracing,
        trace_include_sensitive_data=False,
        workflow_name="informer-nas",
        tool_not_found_behavior="return_error_to_model",
        tool_error_formatter=tool_error_formatter(tools),
    )


def is_unreachable(error: BaseException) -> bool:
    """The endpoint cannot serve the session (not a model mistake the model can correct):
    a transport failure left after the client's retries, any HTTP error status (401, 404,
    a 400 or 422 such as an exceeded context length or a model without tool calls, 5xx;
    also a provider's error sent in a 200 answer, which takes the status it carries:
    ``endpoint.carry_error_status``), or an answer that is not a chat completion (a wrong
    ``NAS_LLM_BASE_URL``)."""
    import openai

    from informer_nas.agents.endpoint import EndpointProtocolError

    return isinstance(error, openai.APIConnectionError | openai.APIStatusError
                      | EndpointProtocolError)


MAX_REASON = 400  # characters of an unavailable endpoint's reason


def unavailable_reason(error: BaseException) -> str:
    """One line for the user: what the endpoint said, keys redacted, capped."""
    import openai

    from informer_nas.nas_system.secrets import redact_text

    text = " ".join(redact_text(str(error)).split())
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        text += " (check OPENAI_API_KEY or OPENROUTER_API_KEY)"
    if len(text) <= MAX_REASON:
        return text
    # the middle goes: the start says what failed, the end what to check
    return f"{text[:MAX_REASON // 2]} ... {text[len(text) - MAX_REASON // 2:]}"


PromptBuilder = Callable[[ToolContext, Budget], str]
IterationHook = Callable[[ToolContext, RunRecord | None], None]


def default_prompt(ctx: ToolContext, budget: Budget) -> str:
    return (f"Iteration {budget.iteration} of {budget.max_iterations}: propose, edit and "
            f"launch the next candidate, then answer with your decision.")


class AgentPlanner:
    """A session ``Planner`` that runs the planner agent once per iteration.

    Args:
        name: the brain's name (``tpe``, ``llm``, ...), stored in the state.
        provider: maps the roles to the brain's models (already recording).
        binding: shared with the models; ``ctx`` is set here before each run.
        tracing: export traces to OpenAI (off unless the user opts in).
        prompt: builds the iteration's input message (hybrid adds its proposal).
        before: called before each run (offline brains sync their study).
        after: called once an iteration is committed.
    """

    def __init__(self, name: str, provider: RoleModelProvider, binding: Binding,
                 tracing: bool = False, prompt: PromptBuilder = default_prompt,
                 before: Callable[[ToolContext, Budget], None] | None = None,
                 after: IterationHook | None = None) -> None:
        self.name = name
        self.binding = binding
        self.agent = build_planner_agent(binding)
        self.run_config = run_config(provider, tool_names(self.agent), tracing)
        self.prompt = prompt
        self.before = before
        self.after = after

    def plan_iteration(self, ctx: ToolContext, budget: Budget) -> PlannerOutcome:
        self.binding.ctx = ctx
        self.binding.reads.clear()
        if self.before is not None:
            self.before(ctx, budget)
        try:
            result = self._run(ctx, self.prompt(ctx, budget))
        except MaxTurnsExceeded as exc:
            why = (f"planning failure: turn limit of {ctx.settings.max_turns} reached"
                   f"{_spent_on(exc, ctx)}")
            logger.warning(why)
            return PlannerOutcome.failed(why)
        except AgentsException as exc:
            stop = _session_stop(exc)
            if stop is not None:  # the SDK wraps what a tool raised
                raise stop from None
            logger.warning("planning failure: %s", exc)
            return PlannerOutcome.failed(f"planning failure: {exc}")
        except Exception as exc:
            if is_unreachable(exc):
                raise BrainUnavailable(unavailable_reason(exc)) from exc
            raise
        return _outcome(result.final_output)

    def _run(self, ctx: ToolContext, prompt: str) -> Any:
        """Run the agent; an answer that is not a ``PlannerDecision`` (a plan in prose, a
        malformed object) is sent back once with what is wrong and what to do, within the
        same turn limit, instead of spending the iteration on it."""
        turns = ctx.settings.max_turns
        unusable: list[RunErrorData] = []

        def keep(handler_input: RunErrorHandlerInput[ToolContext]) -> None:
            unusable.append(handler_input.run_data)
            return None  # the SDK raises its error, caught below

        handlers: RunErrorHandlers[ToolContext] = {"invalid_final_output": keep}
        try:
            return run_async(Runner.run(self.agent, prompt, context=ctx, max_turns=turns,
                                        run_config=self.run_config, error_handlers=handlers))
        except ModelBehaviorError:
            if not unusable or model_turns(unusable[-1].output) >= turns:
                raise
        data = unusable[-1]
        correction = answer_correction(_text_of(data.output), ctx)
        logger.info("planner answer unusable; asked again: %s", correction)
        return run_async(Runner.run(
            self.agent, [*data.history, {"role": "user", "content": correction}], context=ctx,
            max_turns=turns - model_turns(data.output), run_config=self.run_config))

    def finish_iteration(self, ctx: ToolContext, record: RunRecord | None) -> None:
        if self.after is not None:
            self.after(ctx, record)


DECISION_FORM = ('{"step_type": "small" | "medium" | "radical" | "stop", "plan": "...", '
                 '"reason": "..."}')


def answer_correction(text: str, ctx: ToolContext) -> str:
    """What the planner is told after an answer that is not a ``PlannerDecision``: what was
    wrong with it and what to do next (launch first if it has not)."""
    try:
        PlannerDecision.model_validate_json(text)
        problem = "it was not a decision"
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            problem = "it was prose, not a JSON object"
        else:
            where = ".".join(str(part) for part in first["loc"]) or "the answer"
            problem = f"{where}: {first['msg']}"
    current = ctx.state.current
    if current is not None and current.launched_run_id is not None:
        step = "answer"
    else:
        step = ("you have not launched a training: call edit_config with your changes and "
                "launch_training once, then answer")
    return (f"Your last message was not the decision ({problem}); {step} with only a JSON "
            f"object {DECISION_FORM} (step_type stop, without a training, ends the search).")


def _spent_on(error: AgentsException, ctx: ToolContext) -> str:
    """`` without launching a training (read_history x9, 8 refused; edit_config x3)``: what
    the turns went to, so that a spent iteration says why ("" when unknown)."""
    data = error.run_data
    if data is None:
        return ""
    calls: dict[str, int] = {}
    refused: dict[str, int] = {}
    names: dict[str, str] = {}  # call id -> tool name
    for item in data.new_items:
        raw = item.raw_item
        name = getattr(raw, "name", None)
        if isinstance(item, ToolCallItem) and isinstance(name, str):
            calls[name] = calls.get(name, 0) + 1
            names[str(getattr(raw, "call_id", ""))] = name
        elif isinstance(item, ToolCallOutputItem) and str(item.output).startswith(
                TOOL_ERROR_PREFIX):
            call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", "")
            refused_name = names.get(str(call_id), "")
            refused[refused_name] = refused.get(refused_name, 0) + 1
    current = ctx.state.current
    launched = current is not None and current.launched_run_id is not None
    where = " after launching a training" if launched else " without launching a training"
    tally = "; ".join(f"{name} x{count}" + (f", {refused[name]} refused" if refused.get(name)
                                             else "") for name, count in calls.items())
    return f"{where} ({tally})" if tally else where


def _text_of(items: Sequence[Any]) -> str:
    """The text of the last assistant message among ``items`` ("" when there is none)."""
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("role") != "assistant":
            continue
        content = item.get("content")
        if isinstance(content, list):
            return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        if isinstance(content, str):
            return content
    return ""


def model_turns(items: Sequence[Any]) -> int:
    """How many model responses produced ``items`` (a run's new items as input items): each
    stretch of model output between tool outputs is one."""
    turns, in_response = 0, False
    for item in items:
        produced = isinstance(item, dict) and item.get("type") != "function_call_output"
        if produced and not in_response:
            turns += 1
        in_response = produced
    return turns


def _session_stop(error: BaseException) -> BaseException | None:
    """The error behind ``error`` that must stop the session (a replay's divergence, a
    machine that cannot write the runs' files or the workspace: disk full, no permission),
    if any: an iteration spent on it would say nothing about a candidate."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ReplayDivergence | EnvironmentFailure):
            return seen
        if isinstance(seen, OSError) and seen.errno in MACHINE_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def capped(text: str, limit: int = MAX_RATIONALE) -> str:
    """A model's free text as it may be stored and shown again: at most ``limit`` characters
    (each iteration's history carries it back to the planner)."""
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _outcome(output: Any) -> PlannerOutcome:
    if not isinstance(output, PlannerDecision):
        return PlannerOutcome.failed(f"planning failure: unusable final output {output!r:.200}")
    return PlannerOutcome(output.step_type, capped(output.plan), capped(output.reason))
