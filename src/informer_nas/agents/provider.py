"""One ModelProvider for both roles, and the recording wrapper every model goes through.

Agents name their role as their model (``Agent(model="planner")``); ``RoleModelProvider``
maps the role to the brain's ``Model``. A provider per role is preferred over
``RunConfig(model=...)``, which would also override the evaluator nested under a tool.

``RecordingModel`` wraps a brain's model: it appends each response to the trace with the
digest of its request, and adds the tokens and estimated cost to ``AgentState.usage``. A
call that fails is traced too, with the kind of its failure (``failure_kind``), so that a
replay fails at the same step in the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import AgentsException, ModelBehaviorError, UserError
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.tool import Tool
from openai.types.responses.response_prompt_param import ResponsePromptParam

from informer_nas.agents.trace import TraceRecorder, combined_digest, request_parts
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.records import RoleUsage

logger = logging.getLogger(__name__)
ROLES: tuple[str, ...] = ("planner", "evaluator")
T = TypeVar("T")
# How a model call failed, as the trace records it: see ``failure_kind``.
FailureKind = Literal["unavailable", "model_behavior", "agents", "error"]
_LOOP: asyncio.AbstractEventLoop | None = None
_DRAIN_ROUNDS = 20


def run_async(coroutine: Awaitable[T]) -> T:
    """Run an agent coroutine as a task on one event loop kept for the process.

    One loop (not ``asyncio.run`` per call) keeps the HTTP client's connections valid
    across iterations, and leaves SIGINT to Python's default: Ctrl+C raises
    ``KeyboardInterrupt`` where the program is, which the session turns into a clean stop.
    On any ``BaseException`` the task (and every task it started) is cancelled and run to
    its end before the exception goes on, so the SDK leaves its trace scope inside the
    task's own ``Context``; a coroutine left suspended would be closed by the garbage
    collector instead, outside it (``Exception ignored in: <coroutine object Runner.run>``).
    The loop stays open after an ordinary exception (a turn limit, a refused answer), since
    the HTTP client of the next call is bound to it; only an interrupt closes it.
    """
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    loop = _LOOP
    task = asyncio.ensure_future(coroutine, loop=loop)
    try:
        return loop.run_until_complete(task)
    except Exception:
        _cancel_tasks(loop)
        raise
    except BaseException:
        _LOOP = None
        _close_loop(loop)
        raise


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the loop's tasks, run them to their end, then close the loop."""
    _cancel_tasks(loop)
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
    except BaseException as exc:  # noqa: BLE001 - closing must not mask the first error
        logger.debug("shutdown_asyncgens: %r", exc)
    loop.close()


def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the loop's pending tasks and run them to their end.

    A task may re-raise the interrupt while it unwinds (a tool task awaited by the runner
    hands its ``KeyboardInterrupt`` on): that stops the loop again, so the cancelled tasks
    are driven until none is left (a bounded number of rounds).
    """
    # Tasks that died with the interrupt would each print a traceback when collected.
    loop.set_exception_handler(lambda _, context: logger.debug("%s", context.get("message")))
    for _ in range(_DRAIN_ROUNDS):
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.wait(pending))
        except BaseException as exc:  # noqa: BLE001 - a re-raised interrupt: keep draining
            logger.debug("task raised while cancelled: %r", exc)
    else:
        logger.warning("agent tasks still pending after %d cancellation rounds", _DRAIN_ROUNDS)


@dataclass
class Binding:
    """What the brains' models need beyond the request: the live tool context.

    The planner and evaluator set ``ctx`` before each agent run; offline brains read the
    workspace and state through it, and usage is added to ``ctx.state``.
    """

    ctx: ToolContext | None = None
    recorder: TraceRecorder | None = None
    session_usage: dict[str, RoleUsage] = field(default_factory=dict)
    # results of the read-only tools in the current agent run, by tool and arguments: a
    # call that would return the same text again is refused (a model looping on reads)
    reads: dict[str, str] = field(default_factory=dict)

    def require(self) -> ToolContext:
        if self.ctx is None:
            raise RuntimeError("brain model called outside an iteration (no ToolContext bound)")
        return self.ctx


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_m: float = 0.0
    output_per_m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6


@dataclass(frozen=True)
class ModelRequest:
    """The arguments of one ``Model.get_response`` call, to read or to pass on."""

    system_instructions: str | None
    input: str | list[TResponseInputItem]
    model_settings: ModelSettings
    tools: list[Tool]
    output_schema: AgentOutputSchemaBase | None
    handoffs: list[Handoff]
    tracing: ModelTracing
    previous_response_id: str | None = None
    conversation_id: str | None = None
    prompt: ResponsePromptParam | None = None

    def parts(self, root: str) -> dict[str, Any]:
        """Digests of each part of the request, as the trace records them (``request_parts``)."""
        return request_parts(self.system_instructions, self.input, self.tools,
                             self.output_schema, root)

    async def send(self, model: Model) -> ModelResponse:
        """Ask ``model`` the same."""
        return await model.get_response(
            self.system_instructions, self.input, self.model_settings, self.tools,
            self.output_schema, self.handoffs, self.tracing,
            previous_response_id=self.previous_response_id,
            conversation_id=self.conversation_id, prompt=self.prompt,
        )


class NonStreamingModel(Model):
    """A ``Model`` for agents that are never streamed (ours never are).

    Subclasses answer in ``respond``, which receives the call's arguments as one
    ``ModelRequest``.
    """

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        return await self.respond(ModelRequest(
            system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
            previous_response_id, conversation_id, prompt,
        ))

    @abstractmethod
    async def respond(self, request: ModelRequest) -> ModelResponse:
        """Answer one ``get_response`` call."""

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise UserError("informer-nas runs its agents without streaming")


class RecordingModel(NonStreamingModel):
    """Wraps a model: traces each response and meters its usage under ``role``."""

    def __init__(self, inner: Model, role: str, binding: Binding, price: Price = Price()) -> None:
        self.inner = inner
        self.role = role
        self.binding = binding
        self.price = price

    async def respond(self, request: ModelRequest) -> ModelResponse:
        recorder = self.binding.recorder
        root = recorder.root if recorder else ""
        parts = request.parts(root)
        started = time.monotonic()
        try:
            response = await request.send(self.inner)
        except asyncio.CancelledError:
            raise  # an interrupt (the SDK's may be an Exception): the iteration is redone
        except Exception as exc:
            if recorder is not None:
                self._record_failure(recorder, exc)
            raise
        self._meter(response)
        if recorder is not None:
            usage = response.usage
            recorder.write(
                "model", role=self.role, step=recorder.next_step(self.role),
                digest=combined_digest(parts), parts=parts, output=list(response.output),
                response_id=response.response_id,
                usage={"requests": usage.requests, "input_tokens": usage.input_tokens,
                       "output_tokens": usage.output_tokens},
                seconds=round(time.monotonic() - started, 4),
            )
        return response

    def _record_failure(self, recorder: TraceRecorder, error: Exception) -> None:
        """Trace a failed call at the step it failed, with its kind and message (scrubbed by
        the recorder): the session went on without that response (a planning failure, the
        fallback brain, the policy's verdict), and a replay must fail at the same step, in
        the same way, to do the same."""
        from informer_nas.agents.planner import unavailable_reason

        kind = failure_kind(error)
        # An unavailable endpoint's words as the session reports them; any other message in
        # full, since the session's reason (and the later prompts) quote it as it is.
        message = unavailable_reason(error) if kind == "unavailable" else str(error)
        recorder.write("model_error", role=self.role, step=recorder.steps_taken(self.role),
                       failure=kind, error_type=type(error).__name__, error=message)

    def _meter(self, response: ModelResponse) -> None:
        usage = response.usage
        if usage.requests == 0 and usage.input_tokens + usage.output_tokens == 0:
            return  # a local answer (the tpe and random brains): no request was made
        requests = usage.requests
        cost = self.price.cost(usage.input_tokens, usage.output_tokens)
        ctx = self.binding.ctx
        targets = [self.binding.session_usage]
        if ctx is not None:
            targets.append(ctx.state.usage)
        for table in targets:
            role_usage = table.setdefault(self.role, RoleUsage())
            role_usage.requests += requests
            role_usage.input_tokens += usage.input_tokens
            role_usage.output_tokens += usage.output_tokens
            role_usage.cost_usd = round(role_usage.cost_usd + cost, 8)

    async def close(self) -> None:
        await self.inner.close()


def failure_kind(error: Exception) -> FailureKind:
    """How a model call failed, which decides what the planner and evaluator make of it.

    ``unavailable``: the endpoint cannot serve the session (``planner.is_unreachable``);
    ``model_behavior``: an answer the SDK cannot use (no choices, a message truncated
    before its first token); ``agents``: another error of the Agents SDK; ``error``:
    anything else (it ends the session).
    """
    from informer_nas.agents.planner import is_unreachable

    if is_unreachable(error):
        return "unavailable"
    if isinstance(error, ModelBehaviorError):
        return "model_behavior"
    return "agents" if isinstance(error, AgentsException) else "error"


class RoleModelProvider(ModelProvider):
    """Maps the model names ``planner`` and ``evaluator`` to the brains' models."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self.models = dict(models)

    def get_model(self, model_name: str | None) -> Model:
        if model_name not in self.models:
            raise UserError(f"no model for role {model_name!r}; roles: {sorted(self.models)}")
        return self.models[model_name]


def recording_provider(models: Mapping[str, Model], binding: Binding,
                       prices: Mapping[str, Price] | None = None) -> RoleModelProvider:
    """A provider whose models record into ``binding.recorder`` and meter usage."""
    prices = prices or {}
    return RoleModelProvider({
        role: RecordingModel(model, role, binding, prices.get(role, Price()))
        for role, model in models.items()
    })


def usage_dict(usage: Mapping[str, RoleUsage]) -> dict[str, Any]:
    """Usage per role as plain JSON."""
    return {role: value.model_dump() for role, value in usage.items()}
