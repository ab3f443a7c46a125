"""Secrets: an API key in the environment or in ``.env`` appears in no workspace file.

Real ``nas`` processes (forked from the fork server, so ``nas.log`` is written as in
use) run the llm brain against the scripted local server, or the tpe brain with a key
set; ``nas report`` then writes its files. Every file under the workspace (state,
journal, traces, nas.log, run directories, study, report) is searched for each key and
for its distinctive middle part; so is the output of the command where it says so (the
credentials of a base URL, a key the model echoes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forkserver_client import ForkServer
from llm_server import Reply, answer, error, iteration, scripted_server

ENV_KEY = "sk-env-SECRET-0123456789abcdef"
DOTENV_KEY = "sk-dotenv-SECRET-fedcba9876543210"
ROUTER_KEY = "sk-or-v1-dotenvSECRET-abcdef0123456789"
KEYS = (ENV_KEY, DOTENV_KEY, ROUTER_KEY)
URL_USER, URL_PASSWORD, URL_QUERY_KEY = "proxyuser", "Pr0xyPassw0rd42", "QueryKeySecret123"
LLM_VARIABLES = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "NAS_LLM_BASE_URL", "NAS_PLANNER_MODEL",
                 "NAS_EVALUATOR_MODEL", "NAS_LLM_MAX_RETRIES", "NAS_LLM_TIMEOUT")


def leaks(root: Path, keys: tuple[str, ...] = KEYS) -> list[str]:
    """``path: key`` for every file under ``root`` holding a key (or its middle part)."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for key in keys:
            middle = key[6:-4] if len(key) >= 18 else key  # a long key's distinctive part
            if key.encode() in data or middle.encode() in data:
                found.append(f"{path.relative_to(root)}: {key}")
    return found


def nas(forkserver: ForkServer, tmp_path: Path, argv: list[str], env: dict[str, str]) -> int:
    """Run ``nas <argv> --workspace tmp_path/ws`` in ``tmp_path`` (where ``.env`` lies)."""
    return forkserver.run([*argv, "--workspace", str(tmp_path / "ws")], tmp_path,
                          tmp_path / "nas.out", timeout=180, env=env, unset=LLM_VARIABLES)


def write_dotenv(tmp_path: Path, base_url: str | None = None) -> None:
    lines = [f'OPENAI_API_KEY="{DOTENV_KEY}"', f"export OPENROUTER_API_KEY={ROUTER_KEY}"]
    if base_url:
        lines.append(f"NAS_LLM_BASE_URL={base_url}  # the local test server")
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("source", ["env", "dotenv"])
def test_llm_session_records_no_key(source: str, forkserver: ForkServer,
                                    tmp_path: Path) -> None:
    """The llm brain with the key from the environment (which wins) or from ``.env``."""
    with scripted_server([*iteration(0.2), *iteration(0.1)]) as server:
        write_dotenv(tmp_path, server.base_url)
        env = {"NAS_LLM_MAX_RETRIES": "0"}
        if source == "env":
            env["OPENAI_API_KEY"] = ENV_KEY
        code = nas(forkserver, tmp_path, ["run", "--iters", "2", "--planner", "llm",
                                          "--preset", "tiny"], env)
        used = {request["auth"] for request in server.requests}
    assert code == 0, (tmp_path / "nas.out").read_text()[-2000:]
    assert used == {f"Bearer {ENV_KEY if source == 'env' else DOTENV_KEY}"}
    assert nas(forkserver, tmp_path, ["report"], env) == 0
    assert (tmp_path / "ws" / "nas.log").is_file() and list((tmp_path / "ws").rglob("*.jsonl"))
    assert not leaks(tmp_path / "ws")


def test_tpe_session_with_keys_set_records_no_key(forkserver: ForkServer,
                                                  tmp_path: Path) -> None:
    write_dotenv(tmp_path)
    env = {"OPENAI_API_KEY": ENV_KEY}
    assert nas(forkserver, tmp_path, ["run", "--iters", "3", "--planner", "tpe", "--preset",
                                      "tiny"], env) == 0
    assert nas(forkserver, tmp_path, ["report"], env) == 0
    assert not leaks(tmp_path / "ws")


def test_key_echoed_in_an_error_is_not_recorded(forkserver: ForkServer, tmp_path: Path) -> None:
    """A server whose 401 message quotes the key: nas.log, state and trace stay clean."""
    echo = error(401, f"Incorrect API key provided: {ENV_KEY}")
    with scripted_server([], fallback=lambda body: echo) as server:
        env = {"OPENAI_API_KEY": ENV_KEY, "NAS_LLM_BASE_URL": server.base_url,
               "NAS_LLM_MAX_RETRIES": "0"}
        code = nas(forkserver, tmp_path, ["run", "--iters", "2", "--planner", "llm",
                                          "--preset", "tiny"], env)
    assert code == 1
    assert not leaks(tmp_path / "ws")


def test_key_echoed_by_the_model_is_not_recorded(forkserver: ForkServer,
                                                 tmp_path: Path) -> None:
    """The model's own text quotes the key (a proxy echoing headers): state stays clean."""
    replies = iteration(0.2)
    replies[-1] = answer(json.dumps({"step_type": "small", "reason": "evidence",
                                     "plan": f"dropout 0.2 (authorised with {ENV_KEY})"}))
    with scripted_server(replies) as server:
        env = {"OPENAI_API_KEY": ENV_KEY, "NAS_LLM_BASE_URL": server.base_url}
        code = nas(forkserver, tmp_path, ["run", "--iters", "1", "--planner", "llm",
                                          "--preset", "tiny"], env)
    assert code == 0
    assert not leaks(tmp_path / "ws")


@pytest.mark.parametrize("credentials", ["userinfo", "query"])
def test_base_url_credentials_are_not_recorded_or_shown(credentials: str, forkserver: ForkServer,
                                                        tmp_path: Path) -> None:
    """A web page at a base URL holding a proxy password or a key: the error message named
    the full URL in nas.log, the trace, stdout and stderr."""
    page = Reply(body=b"<html><body>Welcome to nginx!</body></html>", content_type="text/html")
    with scripted_server([], fallback=lambda body: page) as server:
        host = f"127.0.0.1:{server.server_port}"
        base_url = (f"http://{URL_USER}:{URL_PASSWORD}@{host}" if credentials == "userinfo"
                    else f"http://{host}/v1?api-key={URL_QUERY_KEY}")
        env = {"OPENAI_API_KEY": ENV_KEY, "NAS_LLM_BASE_URL": base_url,
               "NAS_LLM_MAX_RETRIES": "0"}
        code = nas(forkserver, tmp_path, ["run", "--iters", "2", "--planner", "llm",
                                          "--preset", "tiny"], env)
    output = (tmp_path / "nas.out").read_text()
    assert code == 1 and "not a chat completion" in output and host in output, output
    assert (tmp_path / "ws" / "nas.log").is_file() and list((tmp_path / "ws").rglob("*.jsonl"))
    assert not leaks(tmp_path, (*KEYS, URL_PASSWORD, URL_QUERY_KEY)), output


def test_base_url_password_echoed_in_an_error_is_not_recorded(forkserver: ForkServer,
                                                              tmp_path: Path) -> None:
    """A proxy whose 407 message quotes the credentials of the URL: every record of the
    error is redacted, not only the messages that name the URL."""
    echo = error(407, f"proxy authentication failed for {URL_USER}:{URL_PASSWORD}")
    with scripted_server([], fallback=lambda body: echo) as server:
        base_url = f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{server.server_port}/v1"
        env = {"OPENAI_API_KEY": ENV_KEY, "NAS_LLM_BASE_URL": base_url,
               "NAS_LLM_MAX_RETRIES": "0"}
        code = nas(forkserver, tmp_path, ["run", "--iters", "2", "--planner", "llm",
                                          "--preset", "tiny"], env)
    output = (tmp_path / "nas.out").read_text()
    assert code == 1 and "proxy authentication failed" in output, output
    assert not leaks(tmp_path, (*KEYS, URL_USER, URL_PASSWORD)), output


def test_key_echoed_by_the_model_is_not_shown(forkserver: ForkServer, tmp_path: Path) -> None:
    """The model quotes the key in a plan of the stored cap: the screen showed the key, and
    the whole plan (26 lines) at each iteration."""
    replies = iteration(0.2)
    plan = f"dropout 0.2 (authorised with {ENV_KEY}) " + "because the curve is flat " * 80
    replies[-1] = answer(json.dumps({"step_type": "small", "reason": "evidence", "plan": plan}))
    with scripted_server(replies) as server:
        env = {"OPENAI_API_KEY": ENV_KEY, "NAS_LLM_BASE_URL": server.base_url, "COLUMNS": "100"}
        code = nas(forkserver, tmp_path, ["run", "--iters", "1", "--planner", "llm",
                                          "--preset", "tiny"], env)
    output = (tmp_path / "nas.out").read_text()
    assert code == 0, output
    planner_lines = [line for line in output.splitlines() if "the curve" in line]
    assert len(planner_lines) == 1 and len(planner_lines[0]) <= 100, output
    assert "planner small: dropout 0.2 (authorised with [REDACTED])" in planner_lines[0]
    assert not leaks(tmp_path), output
