"""An Agents SDK ``Model`` that speaks the planner's tool protocol for an Optuna study.

Per iteration it emits the same calls an LLM planner would: ``read_history`` ->
``edit_config`` with the sampled values -> ``launch_training`` -> the final
``PlannerDecision`` JSON. It reads where it is from the conversation (the tool outputs
so far), so it needs no state of its own beyond the study's current proposal. An edit
refused by ``edit_config`` is told FAIL and a new trial is asked. A proposal with no
change (the first one of a workspace: the starting config, the baseline) skips
``edit_config``, which refuses an empty change list, and launches the incumbent as is.
"""

from __future__ import annotations

import json
from typing import Any, cast

from agents.items import ModelResponse, TResponseInputItem
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from informer_nas.agents.brains.study import Proposal, StudyBrain
from informer_nas.agents.function_tools import TOOL_ERROR_PREFIX
from informer_nas.agents.provider import Binding, ModelRequest, NonStreamingModel
from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.records import ConfigChange, StepType

RADICAL_KEYS = frozenset({"training.optimizer_class", "training.criterion_class",
                          "training.scheduler_class", "model.revin"})
MEDIUM_PREFIXES = ("model.", "data.seq_len", "data.label_len")
HISTORY_RUNS = 5


def step_type_of(changes: list[ConfigChange]) -> StepType:
    """radical (optimizer, loss, schedule, normalisation) > medium (architecture) > small."""
    keys = {change.key for change in changes}
    if keys & RADICAL_KEYS:
        return "radical"
    if any(key.startswith(MEDIUM_PREFIXES) for key in keys):
        return "medium"
    return "small"


def tool_exchanges(items: str | list[TResponseInputItem]) -> list[tuple[str, str]]:
    """(tool name, output text) of each answered tool call in the conversation, in order."""
    if isinstance(items, str):
        return []
    names: dict[str, str] = {}
    exchanges: list[tuple[str, str]] = []
    for item in items:
        data = cast(dict[str, Any], item if isinstance(item, dict) else dict(item))
        if data.get("type") == "function_call":
            names[str(data.get("call_id"))] = str(data.get("name"))
        elif data.get("type") == "function_call_output":
            output = data.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            exchanges.append((names.get(str(data.get("call_id")), "?"), text))
    return exchanges


def function_call(name: str, arguments: dict[str, Any], call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(id=call_id, call_id=call_id, type="function_call", name=name,
                                    arguments=json.dumps(arguments), status="completed")


def final_message(text: str, item_id: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=item_id, type="message", role="assistant", status="completed",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
    )


class OptimizerModel(NonStreamingModel):
    """The ``planner`` role of the tpe and random brains.

    Args:
        brain: the study to ask and tell.
        binding: gives the live ``ToolContext`` of the iteration.
        label: the brain's name, used in call ids and plans (``tpe``, ``random``).
    """

    def __init__(self, brain: StudyBrain, binding: Binding, label: str) -> None:
        self.brain = brain
        self.binding = binding
        self.label = label

    async def respond(self, request: ModelRequest) -> ModelResponse:
        exchanges = tool_exchanges(request.input)
        output = self._next(exchanges)
        # answered here, not by an endpoint: no request, no tokens (nothing is metered)
        return ModelResponse(output=[output], usage=Usage(requests=0), response_id=None)

    def _call_id(self, count: int) -> str:
        ctx = self.binding.require()
        iteration = ctx.state.current.iteration if ctx.state.current else 0
        return f"{self.label}_{iteration}_{count}"

    def _next(self, exchanges: list[tuple[str, str]]) -> Any:
        call_id = self._call_id(len(exchanges))
        if not exchanges:
            return function_call("read_history", {"last_n": HISTORY_RUNS}, call_id)
        name, output = exchanges[-1]
        if name == "edit_config" and output.startswith(TOOL_ERROR_PREFIX):
            self.brain.reject_current(output)
            return self._edit(call_id)
        if name == "read_history":
            return self._edit(call_id)
        if name == "edit_config":
            return function_call("launch_training", {"seed": None}, call_id)
        return final_message(self._decision(output), call_id)

    def _edit(self, call_id: str) -> Any:
        ctx = self.binding.require()
        config = read_config_literal(ctx.workspace.paths.config)
        proposal = self.brain.propose(ctx.state, config)
        if not proposal.changes:  # the baseline: train the incumbent as is
            return function_call("launch_training", {"seed": None}, call_id)
        return function_call("edit_config", {
            "changes": [change.model_dump() for change in proposal.changes],
            "rationale": self._rationale(proposal),
        }, call_id)

    def _rationale(self, proposal: Proposal) -> str:
        if proposal.baseline:
            return (f"{self.label} trial {proposal.trial_number}: the workspace's starting "
                    f"config, enqueued before any sampling")
        sampler = "TPESampler" if self.brain.sampler_name == "tpe" else "RandomSampler"
        return (f"{self.label} trial {proposal.trial_number}: sampled by {sampler}"
                f"(seed={proposal.sampler_seed}) after {proposal.completed_trials} completed "
                f"trials")

    def _decision(self, launch_output: str) -> str:
        proposal = self.brain.current
        if proposal is None:
            return json.dumps({"step_type": "small", "plan": "no proposal",
                               "reason": launch_output[:300]})
        shown = ", ".join(f"{c.key}={c.value!r}" for c in proposal.changes) or (
            "baseline: the starting config" if proposal.baseline else "no change")
        return json.dumps({
            "step_type": step_type_of(proposal.changes),
            "plan": f"{self.label} trial {proposal.trial_number}: {shown}",
            "reason": self._rationale(proposal),
        })
