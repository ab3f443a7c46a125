"""The evaluator agent: judges only what the rule gate left borderline.

It is reached through ``Agent.as_tool`` with typed parameters (``JudgeRequest``); its
structured output ``EvaluatorDecision`` comes back as JSON through a custom output
extractor (the SDK would pass it as ``str()`` otherwise). The session invokes that tool
directly, only for a borderline verdict, so a decisive rule is never sent to it and never
overridden. If the evaluator fails (turn limit, unusable output, unreachable model), the
deterministic policy decides instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from agents import Agent, AgentOutputSchema, FunctionTool, RunResult, RunResultStreaming
from agents.exceptions import AgentsException, ModelBehaviorError
from agents.tool_context import ToolContext as SdkToolContext
from pydantic import BaseModel, ValidationError

from informer_nas.agents.function_tools import evaluator_tools
from informer_nas.agents.planner import (
    capped,
    is_unreachable,
    run_config,
    tool_names,
    unavailable_reason,
)
from informer_nas.agents.policy import policy_outcome
from informer_nas.agents.provider import Binding, RoleModelProvider, run_async
from informer_nas.nas_system.brain import EvaluatorOutcome
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.gate import GateVerdict

logger = logging.getLogger(__name__)

EVALUATOR_INSTRUCTIONS = """\
You judge one candidate training run of an Informer forecaster that the rule gate found
borderline: its validation MSE is close to the incumbent's, within the thresholds.
Use the tools: run_metrics (both runs, every seed), check_improvement, check_overfitting,
check_failure and summarize_curve. Accept only if the evidence says the candidate is
really better (consistently across seeds, a healthy learning curve, not overfitting);
when in doubt, reject: the incumbent stays. Answer with accept, a one-sentence reason and
short feedback for the planner (what to try next).
"""
JUDGE_TOOL = "judge_candidate"


class EvaluatorDecision(BaseModel):
    """The evaluator's answer (a JSON object, not wrapped)."""

    accept: bool
    reason: str
    feedback: str


class EvaluatorOutputSchema(AgentOutputSchema):
    """``EvaluatorDecision``'s output schema (the same JSON schema, so recorded requests
    still match): an answer that does not fit says which field is wrong. The SDK says
    "Invalid JSON when parsing model output" for a well-formed answer of the wrong shape
    (``{"verdict": 3}``, a list, a missing field) as for broken JSON."""

    def __init__(self) -> None:
        super().__init__(EvaluatorDecision)

    def validate_json(self, json_str: str) -> Any:
        try:
            return super().validate_json(json_str)
        except ModelBehaviorError:
            raise ModelBehaviorError(answer_problem(json_str)) from None


# JSON's names for the Python types json.loads returns
JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
              int: "a number", float: "a number", type(None): "null"}


def answer_problem(json_str: str) -> str:
    """One line on why ``json_str`` is not an ``EvaluatorDecision``: not JSON, not an
    object, or the fields that are missing or of the wrong type (the model's words are not
    quoted: only the names of its fields)."""
    expected = ", ".join(EvaluatorDecision.model_fields)
    try:
        data = json.loads(json_str)
    except ValueError as exc:
        where = f" ({exc.msg} at character {exc.pos})" if isinstance(
            exc, json.JSONDecodeError) else ""
        return (f"the evaluator's answer is not valid JSON{where}; expected an object with "
                f"{expected}")
    head = f"the evaluator's answer did not match the expected fields ({expected})"
    if not isinstance(data, dict):
        return f"{head}: it is {JSON_TYPES.get(type(data), 'not an object')}, not an object"
    try:
        EvaluatorDecision.model_validate_json(json_str)
    except ValidationError as exc:
        return f"{head}: {_field_problems(exc, data)}"
    return head


def _field_problems(error: ValidationError, data: dict[str, Any]) -> str:
    """``missing accept, reason (it has verdict); feedback: Input should be ...``."""
    missing = [str(e["loc"][0]) for e in error.errors() if e["type"] == "missing" and e["loc"]]
    problems = []
    if missing:
        others = [str(key)[:40] for key in data if key not in EvaluatorDecision.model_fields]
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        has = f" (it has {shown})" if others else ""
        problems.append(f"missing {', '.join(missing)}{has}")
    for item in error.errors():
        if item["type"] != "missing":
            where = ".".join(str(part) for part in item["loc"]) or "the answer"
            problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


@dataclass
class JudgeRequest:
    """The typed input of the evaluator tool."""

    run_id: str
    incumbent_run_id: str
    gate_reasons: list[str]


async def decision_json(result: RunResult | RunResultStreaming) -> str:
    """Serialise the structured output as JSON for the caller."""
    output = result.final_output
    if isinstance(output, EvaluatorDecision):
        return output.model_dump_json()
    return json.dumps({"error": f"unusable evaluator output {output!r:.200}"})


def build_evaluator_agent(binding: Binding) -> Agent[ToolContext]:
    return Agent[ToolContext](
        name="evaluator",
        instructions=EVALUATOR_INSTRUCTIONS,
        model="evaluator",
        tools=list(evaluator_tools(binding)),
        output_type=EvaluatorOutputSchema(),
    )


def build_judge_tool(binding: Binding, provider: RoleModelProvider, max_turns: int,
                     tracing: bool = False) -> FunctionTool:
    """The evaluator as a tool (``Agent.as_tool``) returning ``EvaluatorDecision`` JSON."""
    agent = build_evaluator_agent(binding)
    return agent.as_tool(
        tool_name=JUDGE_TOOL,
        tool_description="Judge a borderline candidate against the incumbent.",
        custom_output_extractor=decision_json,
        parameters=JudgeRequest,
        run_config=run_config(provider, tool_names(agent), tracing),
        max_turns=max_turns,
        failure_error_function=None,  # failures fall back to the policy, below
    )


class AgentEvaluator:
    """``Evaluator`` backed by the evaluator agent."""

    name = "agent"

    def __init__(self, provider: RoleModelProvider, binding: Binding, max_turns: int = 8,
                 tracing: bool = False) -> None:
        self.binding = binding
        self.tool = build_judge_tool(binding, provider, max_turns, tracing)

    def judge(self, ctx: ToolContext, run_id: str, verdict: GateVerdict) -> EvaluatorOutcome:
        self.binding.ctx = ctx
        self.binding.reads.clear()
        request = JudgeRequest(run_id, ctx.state.incumbent_run_id or "", list(verdict.reasons))
        arguments = json.dumps(asdict(request))
        sdk_ctx: SdkToolContext[ToolContext] = SdkToolContext(
            context=ctx, tool_name=JUDGE_TOOL, tool_call_id=f"judge-{run_id}",
            tool_arguments=arguments,
        )
        try:
            output: Any = run_async(self.tool.on_invoke_tool(sdk_ctx, arguments))
        except AgentsException as exc:
            return self._fallback(ctx, run_id, f"evaluator failed ({exc})")
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            return self._fallback(ctx, run_id, f"evaluator unreachable ({unavailable_reason(exc)})")
        return self._parse(ctx, run_id, output)

    def _parse(self, ctx: ToolContext, run_id: str, output: Any) -> EvaluatorOutcome:
        try:
            data = json.loads(str(output))
            return EvaluatorOutcome(bool(data["accept"]), capped(str(data["reason"])),
                                    capped(str(data.get("feedback", ""))))
        except (ValueError, KeyError, TypeError):
            return self._fallback(ctx, run_id, f"unusable evaluator output {output!r:.200}")

    @staticmethod
    def _fallback(ctx: ToolContext, run_id: str, why: str) -> EvaluatorOutcome:
        logger.warning("%s; the deterministic policy decides", why)
        return policy_outcome(ctx, run_id, prefix=f"{why}; ")
