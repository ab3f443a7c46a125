"""The endpoint guard, the tool-argument hint and the lock the API holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest
from agents.exceptions import ModelBehaviorError
from agents.items import ModelResponse
from agents.models.interface import ModelTracing

from informer_nas.agents.endpoint import EndpointProtocolError, GuardedModel, LastAnswer
from informer_nas.agents.function_tools import tool_error_message
from informer_nas.agents.planner import MAX_REASON, is_unreachable, unavailable_reason
from informer_nas.agents.provider import ModelRequest, NonStreamingModel
from informer_nas.errors import WorkspaceLocked
from informer_nas.nas_system.lock import workspace_lock
from informer_nas.nas_system.paths import WorkspacePaths


class RaisingModel(NonStreamingModel):
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def respond(self, request: ModelRequest) -> ModelResponse:
        raise self.error


def ask(model: GuardedModel) -> None:
    asyncio.run(model.get_response(None, "hi", None, [], None, [],  # type: ignore[arg-type]
                                   ModelTracing.DISABLED, previous_response_id=None,
                                   conversation_id=None, prompt=None))


def test_an_unreadable_answer_becomes_an_unreachable_endpoint() -> None:
    last = LastAnswer()
    last.text = "HTTP 200 text/html from http://host/chat/completions"
    model = GuardedModel(RaisingModel(AttributeError("'tuple' object has no attribute 'choices'")),
                         "http://host/", last)
    with pytest.raises(EndpointProtocolError) as caught:
        ask(model)
    message = str(caught.value)
    assert "text/html" in message and "check NAS_LLM_BASE_URL (it usually ends in /v1)" in message
    assert is_unreachable(caught.value)


@pytest.mark.parametrize("base_url", [
    "http://proxyuser:Pr0xyPassw0rd42@127.0.0.1:8000",  # a proxy's user and password
    "http://127.0.0.1:8000/v1?api-key=QueryKeySecret123",  # a key as a query parameter
], ids=["userinfo", "query"])
def test_the_message_shows_the_endpoint_without_its_credentials(base_url: str) -> None:
    last = LastAnswer()
    request = SimpleNamespace(url=f"{base_url.rstrip('/')}/chat/completions")  # as the client's
    asyncio.run(last.hook(SimpleNamespace(status_code=200, request=request,
                                          headers={"content-type": "text/html"})))
    for seen in (last, None):  # the answer the hook noted, or none seen
        model = GuardedModel(RaisingModel(AttributeError("no choices")), base_url, seen)
        with pytest.raises(EndpointProtocolError) as caught:
            ask(model)
        message = str(caught.value)
        assert "http://127.0.0.1:8000" in message
        for secret in ("proxyuser", "Pr0xyPassw0rd42", "QueryKeySecret123", "api-key"):
            assert secret not in message


def test_transport_errors_and_model_mistakes_pass_through() -> None:
    timeout = openai.APITimeoutError(request=None)  # type: ignore[arg-type]
    for error in (timeout, ModelBehaviorError("bad")):
        with pytest.raises(type(error)):
            ask(GuardedModel(RaisingModel(error), "http://host/v1"))


def test_invalid_tool_arguments_say_what_is_expected() -> None:
    seen = tool_error_message(None, ModelBehaviorError(  # type: ignore[arg-type]
        "Invalid JSON input for tool edit_config"))
    assert seen.startswith("ERROR: Invalid JSON input for tool edit_config")
    assert '"changes": [{"key"' in seen and '"rationale"' in seen


def test_a_shared_lock_is_reused_inside_its_block_only(tmp_path: Path) -> None:
    paths = WorkspacePaths(tmp_path)
    with workspace_lock(paths, share=True) as outer:
        with workspace_lock(paths) as inner:  # what run_session does under the API
            assert inner == outer
        assert f'"pid": {outer.pid}' in paths.lock.read_text()  # still held
    with workspace_lock(paths):
        with pytest.raises(WorkspaceLocked, match="by this process"):
            with workspace_lock(paths):
                pass


def test_a_long_unavailable_reason_keeps_its_advice() -> None:
    """The line was cut at 300 characters, before "check NAS_LLM_BASE_URL ...": the part
    that says what to do."""
    error = RuntimeError("the LLM endpoint's answer is not a chat completion (" + "x" * 900
                         + "); check NAS_LLM_BASE_URL (it usually ends in /v1), currently "
                         "http://127.0.0.1:8000/v1")
    reason = unavailable_reason(error)
    assert len(reason) <= MAX_REASON + 5 and " ... " in reason
    assert reason.startswith("the LLM endpoint's answer is not a chat completion")
    assert reason.endswith("check NAS_LLM_BASE_URL (it usually ends in /v1), currently "
                           "http://127.0.0.1:8000/v1")
