"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for fault injection.

Each POST pops the next ``Reply`` of the script (status, JSON body or raw bytes, headers,
a delay before answering); when the script is empty, ``fallback`` (a function of the
request body) answers, or a 500. Requests are recorded with their arrival time. Helpers
build the replies of a normal planner iteration (read_history -> edit_config ->
launch_training -> decision).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "vendor/model-x:free"
_CALL_IDS = itertools.count(1)


@dataclass
class Reply:
    """One HTTP answer."""

    status: int = 200
    body: dict[str, Any] | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


def tool_call(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """A tool call with a fresh id; ``arguments`` as a dict (JSON-encoded here) or raw text."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"call_{next(_CALL_IDS)}", "type": "function",
            "function": {"name": name, "arguments": text}}


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


def calls(name: str, arguments: dict[str, Any] | str) -> Reply:
    """A reply that calls one tool."""
    return Reply(body=completion({"content": None, "tool_calls": [tool_call(name, arguments)]},
                                 "tool_calls"))


def answer(content: str | None, **message: Any) -> Reply:
    """A final assistant message."""
    return Reply(body=completion({"content": content, **message}))


def decision(plan: str = "dropout 0.2", step_type: str = "small") -> Reply:
    return answer(json.dumps({"step_type": step_type, "plan": plan, "reason": "evidence"}))


def iteration(value: float = 0.2) -> list[Reply]:
    """A normal planner iteration that sets model.dropout to ``value``."""
    return [calls("read_history", {"last_n": 5}), edit(value),
            calls("launch_training", {"seed": None}), decision(f"dropout {value}")]


def edit(value: Any, key: str = "model.dropout") -> Reply:
    """An edit_config call setting one key."""
    return calls("edit_config", {"changes": [{"key": key, "value": value}],
                                 "rationale": "regularise"})


def error(status: int, message: str = "failure", headers: dict[str, str] | None = None,
          ) -> Reply:
    return Reply(status=status, body={"error": {"message": message}}, headers=headers or {})


def provider_error(message: str, code: Any = None) -> Reply:
    """A 200 answer holding a provider's error instead of choices, as OpenRouter sends one
    when the upstream model fails (``code`` left out when None)."""
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["code"] = code
    return Reply(body={"error": error})


class ScriptedServer(ThreadingHTTPServer):
    """The server; ``script``, ``fallback`` and ``requests`` are shared with the handler."""

    daemon_threads = True

    def __init__(self, script: list[Reply],
                 fallback: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.fallback = fallback
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            if self.script:
                return self.script.pop(0)
        return self.fallback(body) if self.fallback else error(500, "script exhausted")

    def tool_outputs(self) -> list[str]:
        """The text of every tool output the model was sent, in order (deduplicated)."""
        seen: dict[str, str] = {}
        for request in self.requests:
            for message in request["body"].get("messages", []):
                if message.get("role") == "tool":
                    seen.setdefault(str(message.get("tool_call_id")), str(message["content"]))
        return list(seen.values())


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer
    # Keep-alive, as real endpoints answer: the client then reuses its connection across
    # agent runs, which is what breaks if a failed run closes the event loop it is bound to.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body, "t": time.monotonic(),
                                     "auth": self.headers.get("Authorization")})
        reply = self.server.next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def scripted_server(script: list[Reply],
                    fallback: Callable[[dict[str, Any]], Reply] | None = None,
                    ) -> Iterator[ScriptedServer]:
    """Serve ``script`` in a thread for the duration of the block."""
    server = ScriptedServer(script, fallback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
