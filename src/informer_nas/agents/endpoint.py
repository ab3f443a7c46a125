"""A guard around the LLM endpoint's models: an answer that is not a chat completion.

A 200 answer that the client cannot read as a chat completion (a web page because
``NAS_LLM_BASE_URL`` lacks ``/v1``, truncated JSON from a proxy) surfaces from the
``openai`` client or the Agents SDK as an ``AttributeError``, a ``JSONDecodeError`` or the
like. ``GuardedModel`` turns any such exception into ``EndpointProtocolError``, which the
planner and evaluator treat as an unreachable endpoint: the session stops with its state
saved, or goes on with ``--fallback``. Replayed models are not guarded (a
``ReplayDivergence`` must propagate as is). URLs in its message are shown without user info
and query (``secrets.redact_url``): the base URL may carry a password or a key.

A 200 answer that holds a provider's error instead of choices (OpenRouter's
``{"error": {"message": ..., "code": 429}}``) takes the HTTP status it carries
(``carry_error_status``): the ``openai`` client retries it, and reports it when its retries
are spent, exactly as it does the same status sent as such.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import openai
from agents.exceptions import AgentsException
from agents.items import ModelResponse
from agents.models.interface import Model

from informer_nas.agents.provider import ModelRequest, NonStreamingModel
from informer_nas.errors import NasError
from informer_nas.nas_system.secrets import redact_url

BASE_URL_HINT = "check NAS_LLM_BASE_URL (it usually ends in /v1)"


class EndpointProtocolError(NasError):
    """The endpoint answered, but not with a chat completion."""


class LastAnswer:
    """What the endpoint last answered (status and content type), for the error message."""

    def __init__(self) -> None:
        self.text = "no HTTP answer seen"

    async def hook(self, response: Any) -> None:
        """An HTTP client response hook: note the status, content type and URL (redacted)."""
        kind = response.headers.get("content-type", "no content type")
        url = redact_url(response.request.url)
        self.text = f"HTTP {response.status_code} {kind} from {url}"


def guarded_http_client(last: LastAnswer | None = None) -> openai.DefaultAsyncHttpxClient:
    """The ``openai`` client's default HTTP client, a provider's error sent with a 200 taking
    the status it carries (``carry_error_status``); with ``last``, each answer noted there."""
    hooks: list[Callable[[Any], Awaitable[None]]] = [last.hook] if last is not None else []
    return openai.DefaultAsyncHttpxClient(event_hooks={"response": [*hooks, carry_error_status]})


class GuardedModel(NonStreamingModel):
    """Wraps an endpoint's model: a response it cannot read raises ``EndpointProtocolError``."""

    def __init__(self, inner: Model, base_url: str, last: LastAnswer | None = None) -> None:
        self.inner = inner
        self.base_url = base_url
        self.last = last

    async def respond(self, request: ModelRequest) -> ModelResponse:
        try:
            return await request.send(self.inner)
        except (openai.OpenAIError, AgentsException):
            raise  # transport errors and model mistakes are handled by their callers
        except Exception as exc:
            raise EndpointProtocolError(self._message(exc)) from exc

    def _message(self, exc: Exception) -> str:
        base_url = redact_url(self.base_url)
        seen = self.last.text if self.last is not None else f"an answer from {base_url}"
        detail = _short(f"{type(exc).__name__}: {exc}")
        return (f"the LLM endpoint's answer is not a chat completion ({seen}; {detail}); "
                f"{BASE_URL_HINT}, currently {base_url}")

    async def close(self) -> None:
        await self.inner.close()


def _short(text: Any, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


UNKNOWN_ERROR_STATUS = 502  # a provider's error without an HTTP status: a bad gateway's


async def carry_error_status(response: Any) -> None:
    """An HTTP client response hook: a 200 JSON answer holding an ``error`` and no choices
    takes the status of that error (its ``code`` when that is a 4xx or 5xx, else 502)."""
    if response.status_code != 200 or "json" not in response.headers.get("content-type", ""):
        return
    await response.aread()
    try:
        body = json.loads(response.content)
    except ValueError:
        return  # not a chat completion either: GuardedModel reports it
    if isinstance(body, dict) and body.get("error") and not body.get("choices"):
        response.status_code = error_status(body["error"])


def error_status(error: Any) -> int:
    """The HTTP status a provider's ``error`` object carries (502 when it names none)."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return UNKNOWN_ERROR_STATUS
