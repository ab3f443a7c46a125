"""The llm brain through the real ``openai`` client against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import fake_train

from informer_nas.api import run_nas_optimization
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace

MODEL = "vendor/model-x:free"  # slashes and colons must reach the server verbatim
KEY = "sk-local-test-key-0123456789"


def tool_call(name: str, arguments: dict[str, Any], number: int) -> dict[str, Any]:
    return {"id": f"call_{number}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


def completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


SCRIPT: list[tuple[int, dict[str, Any]]] = [
    (500, {"error": {"message": "overloaded"}}),  # retried by the client
    (429, {"error": {"message": "slow down"}}),   # retried after Retry-After
    (200, completion({"content": None, "tool_calls": [
        tool_call("read_history", {"last_n": 5}, 1)]}, "tool_calls")),
    (200, completion({"content": None, "tool_calls": [tool_call("edit_config", {
        "changes": [{"key": "model.dropout", "value": 0.2}], "rationale": "regularise"},
        2)]}, "tool_calls")),
    (200, completion({"content": None, "tool_calls": [
        tool_call("launch_training", {"seed": None}, 3)]}, "tool_calls")),
    (200, completion({"content": json.dumps(
        {"step_type": "small", "plan": "dropout 0.2", "reason": "overfitting"})}, "stop")),
]


class Server(ThreadingHTTPServer):
    script: list[tuple[int, dict[str, Any]]]
    requests: list[dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body,
                                     "auth": self.headers.get("Authorization")})
        status, payload = self.server.script.pop(0)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.script = list(SCRIPT)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_llm_planner_over_the_wire(server: Server, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("NAS_LLM_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("NAS_PLANNER_MODEL", MODEL)
    monkeypatch.setenv("NAS_LLM_MAX_RETRIES", "3")
    monkeypatch.setenv("NAS_LLM_PRICE_IN", "1.0")
    monkeypatch.setenv("NAS_LLM_PRICE_OUT", "2.0")
    root = tmp_path / "ws"
    result = run_nas_optimization(root, iters=1, planner="llm", preset="tiny",
                                  executor=CallableExecutor(fake_train), quiet=True)
    assert result.stopped_by == "budget" and not server.script
    state = load_state(Workspace.open(root).paths)
    record = state.runs[0]
    assert (record.plan, record.accepted, record.changes[0].value) == ("dropout 0.2", True, 0.2)
    assert {r["body"]["model"] for r in server.requests} == {MODEL}
    assert all(r["path"] == "/v1/chat/completions" for r in server.requests)
    assert server.requests[0]["auth"] == f"Bearer {KEY}"
    usage = state.usage["planner"]
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (4, 400, 80)
    assert usage.cost_usd == pytest.approx((400 * 1.0 + 80 * 2.0) / 1e6)
    for path in root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_unreachable_llm_stops_cleanly_or_falls_back(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("NAS_LLM_MAX_RETRIES", "0")
    root = tmp_path / "ws"
    result = run_nas_optimization(root, iters=2, planner="llm", preset="tiny",
                                  executor=CallableExecutor(fake_train), quiet=True)
    assert result.stopped_by == "brain_unavailable" and result.iteration == 0
    assert load_state(Workspace.open(root).paths).current is None
    result = run_nas_optimization(root, iters=2, planner="llm", fallback="tpe",
                                  executor=CallableExecutor(fake_train), quiet=True)
    assert result.stopped_by == "budget" and result.iteration == 2


@pytest.mark.parametrize(("name", "value"), [
    ("NAS_LLM_MAX_RETRIES", "nan"), ("NAS_LLM_MAX_RETRIES", "inf"),
    ("NAS_LLM_MAX_RETRIES", "1e400"), ("NAS_LLM_MAX_RETRIES", "-1"),
    ("NAS_LLM_MAX_RETRIES", "2.5"), ("NAS_LLM_MAX_RETRIES", "many"),
    ("NAS_LLM_TIMEOUT", "nan"), ("NAS_LLM_TIMEOUT", "-5"), ("NAS_LLM_TIMEOUT", "0"),
    ("NAS_LLM_TIMEOUT", "inf"), ("NAS_LLM_PRICE_IN", "nan"), ("NAS_LLM_PRICE_IN", "-1"),
    ("NAS_LLM_PRICE_OUT", "1e400"),
])
def test_malformed_llm_numbers_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    """nan / inf / 1e400 were a traceback (int(nan)), -1 and nan reached the client and
    blamed NAS_LLM_BASE_URL: now one ConfigError naming the variable and an example."""
    from informer_nas.agents.brains.llm_settings import load_llm_settings
    from informer_nas.errors import ConfigError

    environ = {"NAS_LLM_BASE_URL": "http://127.0.0.1:9/v1", name: value}
    with pytest.raises(ConfigError) as caught:
        load_llm_settings(environ, dotenv=tmp_path / "none.env")
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not ") and f"; e.g. {name}=" in message
    assert "\n" not in message and "NAS_LLM_BASE_URL" not in message


def test_valid_llm_numbers_are_read(tmp_path: Path) -> None:
    from informer_nas.agents.brains.llm_settings import load_llm_settings

    settings = load_llm_settings({"NAS_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                                  "NAS_LLM_MAX_RETRIES": " 3 ", "NAS_LLM_TIMEOUT": "0.5",
                                  "NAS_LLM_PRICE_IN": "0", "NAS_LLM_PRICE_OUT": "2e0"},
                                 dotenv=tmp_path / "none.env")
    assert (settings.max_retries, settings.timeout_s) == (3, 0.5)
    assert (settings.price_in, settings.price_out) == (0.0, 2.0)


def test_blank_llm_variables_count_as_unset(tmp_path: Path) -> None:
    """NAS_LLM_BASE_URL=" " or OPENAI_API_KEY=" " configured an endpoint (a hybrid planner,
    then "Connection error"); blank values are unset, and values are stripped."""
    from informer_nas.agents.brains.llm_settings import (
        DEFAULT_MODEL,
        llm_configured,
        load_llm_settings,
    )

    none = tmp_path / "none.env"
    assert not llm_configured({"NAS_LLM_BASE_URL": " ", "OPENAI_API_KEY": "\t"}, none)
    assert not llm_configured({"OPENROUTER_API_KEY": "  "}, none)
    settings = load_llm_settings({"NAS_LLM_BASE_URL": " http://127.0.0.1:9/v1 ",
                                  "OPENAI_API_KEY": " ", "NAS_PLANNER_MODEL": " "}, none)
    assert settings.base_url == "http://127.0.0.1:9/v1"
    assert (settings.api_key, settings.planner_model) == ("not-needed", DEFAULT_MODEL)
