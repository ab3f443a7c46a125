"""The ``llm`` brain: any OpenAI-compatible endpoint through chat completions.

OpenAI, OpenRouter, Ollama, vLLM or a llama.cpp server: ``NAS_LLM_BASE_URL`` and a key
(see ``llm_settings.py``). Model names are sent verbatim (``anthropic/claude-3.5-sonnet``).
The ``openai`` client retries 429 (honouring Retry-After), 5xx, connection errors and
timeouts with exponential backoff, and a provider's error sent in a 200 answer as the
status it carries (``endpoint.carry_error_status``); what still fails reaches the session
as ``BrainUnavailable`` (stop with the state saved, or ``--fallback tpe``), and so does an
answer that is not a chat completion (``endpoint.EndpointProtocolError``). Export of agent
traces to OpenAI stays off unless ``NAS_OPENAI_TRACING=1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents import OpenAIChatCompletionsModel, set_tracing_disabled
from agents.models.interface import Model
from openai import AsyncOpenAI

from informer_nas.agents.brains.llm_settings import LlmSettings, load_llm_settings
from informer_nas.agents.endpoint import GuardedModel, LastAnswer, guarded_http_client
from informer_nas.agents.evaluator import AgentEvaluator
from informer_nas.agents.planner import AgentPlanner
from informer_nas.agents.provider import Price, RoleModelProvider, recording_provider
from informer_nas.nas_system.brain import Evaluator, Planner

if TYPE_CHECKING:
    from informer_nas.agents.wiring import BrainSpec


def openai_client(settings: LlmSettings, last: LastAnswer | None = None) -> AsyncOpenAI:
    """The HTTP client, with the retry policy and timeout of the settings.

    With ``last``, each HTTP answer's status and content type are noted there (for the
    message of an answer that is not a chat completion).
    """
    return AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key,
                       max_retries=settings.max_retries, timeout=settings.timeout_s,
                       http_client=guarded_http_client(last))


def llm_models(settings: LlmSettings, client: AsyncOpenAI | None = None) -> dict[str, Model]:
    """The planner and evaluator models on one client, guarded (see ``endpoint.py``)."""
    last = None if client is not None else LastAnswer()
    client = client or openai_client(settings, last)
    base_url = str(client.base_url)
    return {
        role: GuardedModel(OpenAIChatCompletionsModel(model=model, openai_client=client),
                           base_url, last)
        for role, model in (("planner", settings.planner_model),
                            ("evaluator", settings.evaluator_model))
    }


def llm_provider(spec: BrainSpec) -> RoleModelProvider:
    """The recording provider of the LLM roles (``spec.models`` replace them in a replay)."""
    set_tracing_disabled(not spec.tracing)
    if spec.models:
        return recording_provider(spec.models, spec.binding)
    settings = load_llm_settings()
    prices = {role: Price(*settings.price(model)) for role, model in
              (("planner", settings.planner_model), ("evaluator", settings.evaluator_model))}
    return recording_provider(llm_models(settings), spec.binding, prices)


def llm_brain(spec: BrainSpec) -> tuple[Planner, Evaluator]:
    """The LLM planner and the LLM evaluator."""
    provider = llm_provider(spec)
    planner = AgentPlanner("llm", provider, spec.binding, tracing=spec.tracing)
    evaluator = AgentEvaluator(provider, spec.binding, max_turns=spec.settings.max_turns,
                               tracing=spec.tracing)
    return planner, evaluator
