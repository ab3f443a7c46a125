"""LLM faults through a scripted OpenAI-compatible server on 127.0.0.1 (issue 4's handling).

Each test runs the ``llm`` brain (the real ``openai`` client and Agents SDK) against
``llm_server.py``, training with ``fake_trainer.py``, and asserts whether the session
continued or stopped cleanly, and that the state stayed consistent:

- transient 500/502, 429 with Retry-After, a timeout, a provider's error sent in a 200
  answer: retried, the iteration completes;
- persistent 500, timeouts or provider errors: the session stops cleanly
  (``brain_unavailable``, state saved, nothing half-done), a later resume completes; with
  ``fallback="tpe"`` it goes on;
- malformed tool arguments, an unknown tool, a hallucinated config key: the model gets
  an ``ERROR:`` tool output, corrects itself, the iteration completes;
- an empty message: asked again; a refusal, a response without choices, the turn limit:
  a planning failure, the iteration is spent and the session goes on; the trace records
  each failed model call, so the session replays identically;
- an unreachable evaluator: the deterministic policy decides;
- a 200 answer that is not a chat completion (an HTML page, invalid JSON): the session
  must stop cleanly, not crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_checks import check_config, check_state, check_traces
from fake_trainer import val_mse_of
from forkserver_client import ForkServer
from llm_server import (
    Reply,
    ScriptedServer,
    answer,
    calls,
    completion,
    decision,
    edit,
    error,
    iteration,
    provider_error,
    scripted_server,
)
from session_forkserver import FAKE_TRAINER

from informer_nas.agents.replay import replay_trace
from informer_nas.agents.trace import read_trace
from informer_nas.api import run_nas_optimization
from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.session import SessionResult
from informer_nas.nas_system.state import AgentState, load_state

KEY = "sk-reliability-test-key-0123456789"
LLM_VARIABLES = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "NAS_LLM_BASE_URL", "NAS_PLANNER_MODEL",
                 "NAS_EVALUATOR_MODEL", "NAS_LLM_MAX_RETRIES", "NAS_LLM_TIMEOUT")
Session = Callable[..., SessionResult]


@pytest.fixture
def llm_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean LLM environment (no stray .env or key), retries and timeouts kept short."""
    monkeypatch.chdir(tmp_path)
    for name in LLM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("NAS_LLM_MAX_RETRIES", "2")
    monkeypatch.setenv("NAS_LLM_TIMEOUT", "5")
    yield monkeypatch


@pytest.fixture
def session(tmp_path: Path, llm_env: pytest.MonkeyPatch) -> Session:
    """``session(server, iters=1, **options)``: run the llm brain on ``tmp_path/ws``."""

    def run(server: ScriptedServer, iters: int = 1, **options: Any) -> SessionResult:
        llm_env.setenv("NAS_LLM_BASE_URL", server.base_url)
        options.setdefault("planner", "llm")
        return run_nas_optimization(
            tmp_path / "ws", iters=iters, preset="tiny", quiet=True,
            executor=LocalSubprocessExecutor(python_args=[str(FAKE_TRAINER)], grace_s=2.0),
            **options)

    return run


def consistent(root: Path) -> AgentState:
    """The state loads, nothing is half-done, config.py is the incumbent's."""
    paths = WorkspacePaths(root.resolve())
    state, problems = check_state(paths)
    assert state is not None, problems
    initial = None if state.incumbent_run_id else paths.config.read_text(encoding="utf-8")
    problems += check_config(paths, state, initial or "", allow_pending=False)
    problems += check_traces(paths)
    assert not problems, problems
    assert state.current is None and not paths.candidate.exists()
    assert all(run.status.is_finished and run.verdict for run in state.runs)
    return state


def events(root: Path, name: str) -> list[dict[str, Any]]:
    """The session events ``name`` of every trace of the workspace."""
    found = []
    for path in sorted((root / "traces").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("kind") == "event" and record.get("name") == name:
                found.append(record)
    return found


# -- transport faults: retried, then the iteration completes ------------------------------

TRANSIENT: dict[str, list[Reply]] = {
    "500-then-502": [error(500, "overloaded"), error(502, "bad gateway")],
    "timeout": [Reply(body={}, delay=3.0)],
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_failure_is_retried(fault: str, session: Session, llm_env: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    llm_env.setenv("NAS_LLM_TIMEOUT", "1")
    with scripted_server([*TRANSIENT[fault], *iteration(0.2)]) as server:
        result = session(server)
        assert not server.script, "every scripted answer was consumed"
    assert result.stopped_by == "budget"
    state = consistent(tmp_path / "ws")
    assert [(r.status.value, r.accepted) for r in state.runs] == [("ok", True)]


def test_429_waits_for_retry_after(session: Session, tmp_path: Path) -> None:
    with scripted_server([error(429, "slow down", {"Retry-After": "1"}),
                          *iteration(0.2)]) as server:
        result = session(server)
        gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert result.stopped_by == "budget" and len(consistent(tmp_path / "ws").runs) == 1
    assert gap >= 0.9, f"retried after {gap:.2f} s despite Retry-After: 1"


# A 200 answer holding a provider's error (OpenRouter's rate limits): retried as its code.
ERROR_PAYLOADS: dict[str, Reply] = {
    "429": provider_error("Provider returned error: upstream rate limited", 429),
    "503-as-text": provider_error("Provider returned error: overloaded", "503"),
    "no-code": provider_error("Provider returned error"),  # as a 502
}


@pytest.mark.parametrize("payload", sorted(ERROR_PAYLOADS))
def test_error_payload_is_retried_like_its_status(payload: str, session: Session,
                                                  tmp_path: Path) -> None:
    """Not a planning failure that spends the iteration: the client retries it with backoff."""
    failed = ERROR_PAYLOADS[payload]
    with scripted_server([failed, failed, *iteration(0.2)]) as server:
        result = session(server)  # NAS_LLM_MAX_RETRIES=2
        assert not server.script and len(server.requests) == 6
        gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert result.stopped_by == "budget"
    assert gap >= 0.2, f"retried after {gap:.2f} s, without backoff"
    state = consistent(tmp_path / "ws")
    assert [(r.iteration, r.status.value, r.accepted) for r in state.runs] == [(1, "ok", True)]
    assert not events(tmp_path / "ws", "planning_failure")


# -- persistent transport faults: a clean stop, then resume or fallback ---------------------


def always(reply: Reply) -> Callable[[dict[str, Any]], Reply]:
    return lambda body: reply


@pytest.mark.parametrize("fault", ["500", "timeout"])
def test_persistent_failure_stops_cleanly_and_resume_completes(
        fault: str, session: Session, llm_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    llm_env.setenv("NAS_LLM_MAX_RETRIES", "1")
    llm_env.setenv("NAS_LLM_TIMEOUT", "0.5")
    failing = error(500, "down") if fault == "500" else Reply(body={}, delay=1.5)
    with scripted_server(iteration(0.2), fallback=always(failing)) as server:
        result = session(server, iters=3)
    assert (result.stopped_by, result.iteration) == ("brain_unavailable", 1)
    reason = events(tmp_path / "ws", "planning_failure")[-1]["reason"]
    assert ("Error code: 500" if fault == "500" else "timed out") in reason
    kept = consistent(tmp_path / "ws").runs
    assert len(kept) == 1 and kept[0].accepted
    with scripted_server([*iteration(0.3), *iteration(0.1)]) as server:
        result = session(server, iters=None)
    assert (result.stopped_by, result.iteration) == ("budget", 3)
    assert consistent(tmp_path / "ws").runs[0] == kept[0]


def test_failure_after_launch_keeps_the_run(session: Session, llm_env: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """The model dies between launch_training and its decision: the run is still judged."""
    llm_env.setenv("NAS_LLM_MAX_RETRIES", "0")
    with scripted_server(iteration(0.2)[:3], fallback=always(error(503))) as server:
        result = session(server, iters=2)
    assert (result.stopped_by, result.iteration) == ("brain_unavailable", 1)
    state = consistent(tmp_path / "ws")
    assert [(r.status.value, r.accepted) for r in state.runs] == [("ok", True)]
    # the display said "no candidate: Error code: 503", then accepted the candidate
    assert not events(tmp_path / "ws", "planning_failure")
    assert [event["run_id"] for event in events(tmp_path / "ws", "verdict")] == ["run_0000"]


@pytest.mark.parametrize("status", [400, 422])
def test_refused_request_stops_cleanly_with_the_endpoints_reason(
        status: int, session: Session, llm_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A 400 or 422 (a context length exceeded, a model without tool calls) is not retried
    and not the model's mistake: the session stops with the endpoint's words, state saved."""
    llm_env.setenv("NAS_LLM_MAX_RETRIES", "0")
    refusal = error(status, f"This model's maximum context length is 8192 tokens ({KEY})")
    with scripted_server(iteration(0.2), fallback=always(refusal)) as server:
        result = session(server, iters=3)
    assert (result.stopped_by, result.iteration) == ("brain_unavailable", 1)
    assert f"Error code: {status}" in result.message
    assert "maximum context length" in result.message and KEY not in result.message
    assert [(r.status.value, r.accepted) for r in consistent(tmp_path / "ws").runs] == [
        ("ok", True)]


@pytest.mark.parametrize("planner", ["llm", "hybrid"])
def test_persistent_failure_with_fallback_goes_on_with_tpe_and_replays(
        planner: str, session: Session, llm_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The switch to TPE happens where the endpoint failed; the replay fails there too (the
    trace records the failure), so it switches at the same step: the hybrid brain's prompts
    differ from TPE's, and a replay without the switch diverged."""
    llm_env.setenv("NAS_LLM_MAX_RETRIES", "0")
    with scripted_server(iteration(0.2), fallback=always(error(500))) as server:
        result = session(server, iters=3, fallback="tpe", planner=planner)
    assert (result.stopped_by, result.iteration) == ("budget", 3)
    state = consistent(tmp_path / "ws")
    assert len(state.runs) == 3 and state.runs[0].plan == "dropout 0.2"
    assert state.runs[2].plan.startswith("tpe trial")
    trace = next((tmp_path / "ws" / "traces").glob("*.jsonl"))
    report = replay_trace(trace, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert report.iterations == 3


@pytest.mark.parametrize("fallback", [None, "tpe"])
def test_persistent_error_payload_is_an_unavailable_endpoint(
        fallback: str | None, session: Session, llm_env: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Rate limits that outlast the retries, sent as 200 answers: as after an HTTP 429, the
    session stops with its state saved, or the fallback plans the same iteration on."""
    llm_env.setenv("NAS_LLM_MAX_RETRIES", "1")
    with scripted_server(iteration(0.2), fallback=always(ERROR_PAYLOADS["429"])) as server:
        result = session(server, iters=3, fallback=fallback)
    runs = consistent(tmp_path / "ws").runs
    assert not [e for e in events(tmp_path / "ws", "planning_failure") if e["committed"]]
    if fallback is None:
        assert (result.stopped_by, result.iteration) == ("brain_unavailable", 1)
        assert "Error code: 429 - Provider returned error: upstream rate limited" in (
            result.message)
        assert [(r.iteration, r.accepted) for r in runs] == [(1, True)]
        return
    assert (result.stopped_by, result.iteration) == ("budget", 3)
    assert [r.iteration for r in runs] == [1, 2, 3] and runs[1].plan.startswith("tpe trial")
    report = replay_trace(next((tmp_path / "ws" / "traces").glob("*.jsonl")),
                          tmp_path / "replayed")
    assert report.identical, report.divergence


def test_cli_reports_an_unavailable_model_in_one_line(forkserver: ForkServer,
                                                      tmp_path: Path) -> None:
    with scripted_server([], fallback=always(error(500))) as server:
        env = {"NAS_LLM_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY,
               "NAS_LLM_MAX_RETRIES": "0"}
        code = forkserver.run(["run", "--iters", "2", "--planner", "llm", "--preset", "tiny",
                               "--quiet", "--workspace", str(tmp_path / "ws")], tmp_path,
                              tmp_path / "out.log", timeout=120, env=env,
                              err_log=tmp_path / "err.log")
    lines = (tmp_path / "err.log").read_text().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: the planner's model is unavailable (Error code: 500")
    assert "nas resume" in lines[0] and "--fallback tpe" in lines[0]
    assert consistent(tmp_path / "ws").runs == []


# -- model mistakes: an ERROR tool output, corrected by the model ---------------------------

MISTAKES: dict[str, tuple[Reply, str]] = {
    "malformed-arguments": (calls("edit_config", '{"changes": [{"key": "model.dropout", "va'),
                            "ERROR: Invalid JSON input for tool edit_config"),
    "unknown-tool": (calls("delete_workspace", {"confirm": True}),
                     "ERROR: there is no tool 'delete_workspace'"),
    "hallucinated-key": (edit(3, key="model.magic_layers"),
                         "ERROR: unknown key 'model.magic_layers'"),
    "string-for-number": (edit("0.2; import os"), "ERROR: "),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_model_mistake_is_reported_to_the_model(mistake: str, session: Session,
                                                tmp_path: Path) -> None:
    bad, expected = MISTAKES[mistake]
    normal = iteration(0.2)
    with scripted_server([normal[0], bad, *normal[1:]]) as server:
        result = session(server)
        outputs = server.tool_outputs()
    assert result.stopped_by == "budget"
    assert outputs[1].startswith(expected), outputs[1]
    state = consistent(tmp_path / "ws")
    assert [(c.key, c.value) for c in state.runs[0].changes] == [("model.dropout", 0.2)]


def test_empty_message_is_asked_again(session: Session, tmp_path: Path) -> None:
    with scripted_server([answer(""), *iteration(0.2)]) as server:
        result = session(server)
    assert result.stopped_by == "budget" and len(consistent(tmp_path / "ws").runs) == 1
    assert not events(tmp_path / "ws", "planning_failure")


# -- planning failures: the iteration is spent, the session goes on -------------------------

FAILURES: dict[str, tuple[list[Reply], str]] = {
    "refusal": ([answer(None, refusal="I can't help with that.")], "refused"),
    "no-choices": ([Reply(body={"id": "x", "object": "chat.completion", "created": 0,
                                "model": "m", "choices": []})], "no choices"),
    # the reason says what the turns went to, not only that they ran out
    "turn-limit": ([calls("read_history", {"last_n": 5}) for _ in range(4)],
                   "turn limit of 4 reached without launching a training (read_history x4, "
                   "3 refused)"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_planning_failure_spends_the_iteration(failure: str, session: Session,
                                               tmp_path: Path) -> None:
    replies, reason = FAILURES[failure]
    with scripted_server([*replies, *iteration(0.2)]) as server:
        result = session(server, iters=2, max_turns=4)  # an iteration takes 4 turns
        assert not server.script
    assert (result.stopped_by, result.iteration) == ("budget", 2)
    state = consistent(tmp_path / "ws")
    assert [(r.iteration, r.accepted) for r in state.runs] == [(2, True)]
    failed = events(tmp_path / "ws", "planning_failure")
    assert len(failed) == 1 and failed[0]["committed"] and reason in failed[0]["reason"]


# Answers the SDK refuses to use (it raises inside the model call): recorded as failures.
FAILED_CALLS: dict[str, tuple[Reply, str]] = {
    "truncated-empty": (Reply(body=completion({"content": None}, "length")),
                        "finish_reason='length'"),
    "no-choices": (FAILURES["no-choices"][0][0], "no choices"),
}
REFUSAL = Reply(body=completion({"content": None}, "content_filter"))


@pytest.mark.parametrize("failed", sorted(FAILED_CALLS))
def test_failed_model_call_replays_identically(failed: str, session: Session,
                                               tmp_path: Path) -> None:
    """Each failure is traced at its step, with its kind and message, and the replay fails
    there the same way (it diverged at the next iteration's prompt); the content filter's
    refusal, a response, goes on replaying too."""
    reply, reason = FAILED_CALLS[failed]
    with scripted_server([*iteration(0.2), REFUSAL, reply, *iteration(0.3)]) as server:
        result = session(server, iters=4)
    assert (result.stopped_by, result.iteration) == ("budget", 4)
    failures = events(tmp_path / "ws", "planning_failure")
    assert [(e["iteration"], e["committed"]) for e in failures] == [(2, True), (3, True)]
    assert "content filter" in failures[0]["reason"] and reason in failures[1]["reason"]
    trace = next((tmp_path / "ws" / "traces").glob("*.jsonl"))
    recorded = [r for r in read_trace(trace) if r["kind"] == "model_error"]
    assert [(r["role"], r["step"], r["failure"]) for r in recorded] == [
        ("planner", 5, "model_behavior")]
    assert reason in recorded[0]["error"]
    report = replay_trace(trace, tmp_path / "replayed")
    assert report.identical, report.divergence
    assert (report.iterations, report.trained) == (4, 2)  # as status counts: 2 had no candidate
    replayed = load_state(WorkspacePaths((tmp_path / "replayed").resolve()))
    assert [(r.iteration, r.plan, r.verdict_reason) for r in replayed.runs] == [
        (r.iteration, r.plan, r.verdict_reason) for r in consistent(tmp_path / "ws").runs]


@pytest.mark.parametrize("iteration_failed", [1, 2])
def test_untraced_model_failure_is_named_as_the_divergence(
        iteration_failed: int, session: Session, tmp_path: Path) -> None:
    """A trace from before failures were recorded: the replay cannot fail where the session
    did, and says so (it blamed the prompt, or asked for more than the 0 responses)."""
    before = iteration(0.2) if iteration_failed == 2 else []
    with scripted_server([*before, FAILED_CALLS["no-choices"][0], *iteration(0.3)]) as server:
        session(server, iters=iteration_failed + 1)
    trace = next((tmp_path / "ws" / "traces").glob("*.jsonl"))
    lines = trace.read_text(encoding="utf-8").splitlines()
    trace.write_text("".join(f"{line}\n" for line in lines
                             if json.loads(line)["kind"] != "model_error"), encoding="utf-8")
    report = replay_trace(trace, tmp_path / "replayed")
    step = 4 * (iteration_failed - 1)
    assert report.divergence == (
        f"planner step {step}: the recorded session got no further planner response in "
        f"iteration {iteration_failed} (planning failure: ChatCompletion response has no "
        "choices (possible provider error payload)), and its trace holds no record of the "
        "model call that failed (traces from before failures were recorded): the replay "
        "cannot fail the same way")


def test_turn_limit_after_launch_still_judges_the_run(session: Session,
                                                      tmp_path: Path) -> None:
    """The turn limit strikes after launch_training: the finished run is judged anyway."""
    normal = iteration(0.2)
    with scripted_server([*normal[:3], calls("read_history", {"last_n": 5}),
                          *iteration(0.3)]) as server:
        result = session(server, iters=2, max_turns=4)
    assert (result.stopped_by, result.iteration) == ("budget", 2)
    state = consistent(tmp_path / "ws")
    assert [(r.iteration, r.status.value) for r in state.runs] == [(1, "ok"), (2, "ok")]
    assert "turn limit" in state.runs[0].reason


EVALUATOR_FAILURES: dict[str, tuple[Reply, str]] = {
    "unreachable": (error(500), "evaluator unreachable (Error code: 500"),
    "no-choices": (FAILURES["no-choices"][0][0], "evaluator failed (ChatCompletion response"),
}


@pytest.mark.parametrize("failure", sorted(EVALUATOR_FAILURES))
def test_failing_evaluator_leaves_the_decision_to_the_policy(
        failure: str, session: Session, llm_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A borderline candidate (dropout 0.01 lower: ~0.2 % better) while the evaluator is down
    or answers nothing usable: the policy decides, in the replay too."""
    failing, reason = EVALUATOR_FAILURES[failure]
    llm_env.setenv("NAS_LLM_MAX_RETRIES", "0")
    with scripted_server(iteration(0.2)) as server:
        session(server)
    config = read_config_literal(tmp_path / "ws" / "config.py")
    lower = round(config["model"]["dropout"] - 0.01, 6)
    assert abs(val_mse_of(config, 0) - val_mse_of(
        {**config, "model": {**config["model"], "dropout": lower}}, 0)) < 0.002
    with scripted_server(iteration(lower), fallback=always(failing)) as server:
        result = session(server, iters=2)
    assert result.stopped_by == "budget"
    state = consistent(tmp_path / "ws")
    judged = state.runs[1]
    assert (judged.verdict, judged.decided_by) == ("borderline", "policy"), judged
    assert reason in judged.verdict_reason, judged.verdict_reason
    second = sorted((tmp_path / "ws" / "traces").glob("*.jsonl"))[-1]
    report = replay_trace(second, tmp_path / "replayed")  # the evaluator fails there too
    assert report.identical, report.divergence
    replayed = load_state(WorkspacePaths((tmp_path / "replayed").resolve()))
    assert replayed.runs[1].verdict_reason == judged.verdict_reason


# -- not a chat completion: must stop cleanly -----------------------------------------------

NOT_COMPLETIONS: dict[str, Reply] = {
    "html-page": Reply(body=b"<html><body>Welcome to nginx!</body></html>",
                       content_type="text/html"),
    "invalid-json": Reply(body=b'{"id": "chatcmpl-1", "choices": [{'),
}


@pytest.mark.parametrize("reply", sorted(NOT_COMPLETIONS))
def test_answer_that_is_not_a_completion_stops_cleanly(reply: str, session: Session,
                                                       tmp_path: Path) -> None:
    """E.g. NAS_LLM_BASE_URL without /v1 reaching a web page: no traceback, state saved."""
    with scripted_server([], fallback=always(NOT_COMPLETIONS[reply])) as server:
        result = session(server, iters=2)
    assert result.stopped_by in ("brain_unavailable", "budget"), result
    consistent(tmp_path / "ws")


def test_huge_answer_is_stored_capped(session: Session, tmp_path: Path) -> None:
    """A model's free text goes back to the planner with every later history: it is capped
    before it is stored, so one rambling answer cannot grow the state and the prompts."""
    rambling = "because " * 40_000
    with scripted_server([*iteration(0.2)[:3], answer(json.dumps(
            {"step_type": "small", "plan": rambling, "reason": rambling}))]) as server:
        result = session(server, iters=1)
    assert result.stopped_by == "budget"
    run = consistent(tmp_path / "ws").runs[0]
    assert run.plan.startswith("because") and len(run.plan) <= 2000 and len(run.reason) <= 2000
    assert (tmp_path / "ws" / "agent_state.json").stat().st_size < 50_000


def test_decision_without_launch_is_a_planning_failure(session: Session,
                                                       tmp_path: Path) -> None:
    """The model answers at once (no training): the iteration is spent, nothing trained."""
    with scripted_server([decision("nothing"), *iteration(0.2)]) as server:
        result = session(server, iters=2)
    assert (result.stopped_by, result.iteration) == ("budget", 2)
    assert [r.iteration for r in consistent(tmp_path / "ws").runs] == [2]


def test_model_that_never_launches_stops_the_session(session: Session, tmp_path: Path) -> None:
    """Three iterations in a row without a candidate: stop, not the whole budget spent."""
    with scripted_server([], fallback=always(decision("nothing"))) as server:
        result = session(server, iters=6)
    assert (result.stopped_by, result.iteration) == ("no_candidates", 3)
    assert "3 iterations in a row ended without a candidate" in result.message
    assert consistent(tmp_path / "ws").runs == []


def test_model_that_never_launches_hands_over_to_the_fallback(session: Session,
                                                             tmp_path: Path) -> None:
    with scripted_server([], fallback=always(decision("nothing"))) as server:
        result = session(server, iters=4, fallback="tpe")
    assert (result.stopped_by, result.iteration) == ("budget", 4), result
    runs = consistent(tmp_path / "ws").runs
    assert [r.iteration for r in runs] == [2, 3, 4]  # the first failure spent iteration 1
    assert all(r.plan.startswith("tpe trial") for r in runs)


# -- token counts some OpenAI-compatible servers send: not a reason to stop ------------------

ODD_USAGE: dict[str, Any] = {
    "floats": {"prompt_tokens": 100.0, "completion_tokens": 20.0, "total_tokens": 120.0},
    "nulls": {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
    "missing": None,
}


@pytest.mark.parametrize("kind", sorted(ODD_USAGE))
def test_odd_token_counts_do_not_stop_the_session(kind: str, session: Session,
                                                  tmp_path: Path) -> None:
    replies = iteration(0.2)
    for reply in replies:
        assert isinstance(reply.body, dict)
        if ODD_USAGE[kind] is None:
            del reply.body["usage"]
        else:
            reply.body["usage"] = ODD_USAGE[kind]
    with scripted_server(replies) as server:
        result = session(server)
    assert result.stopped_by == "budget", result
    state = consistent(tmp_path / "ws")
    assert [(r.status.value, r.accepted) for r in state.runs] == [("ok", True)]


# -- sloppy but plausible models: told the next step, not left to spend their turns --------


def test_repeated_read_is_refused_with_the_next_step(session: Session, tmp_path: Path) -> None:
    """A model that reads the same history again (nothing changed) is told to edit and
    launch, instead of looping on reads until the turn limit spends the iteration; the
    refusal is recorded, so the session replays identically."""
    read = calls("read_history", {"last_n": 5})
    with scripted_server([read, calls("read_history", {"last_n": 5}), *iteration(0.2)[1:]],
                         ) as server:
        result = session(server)
        outputs = server.tool_outputs()
    assert result.stopped_by == "budget"
    assert outputs[1].startswith("ERROR: read_history with these arguments already returned "
                                 "this"), outputs[1]
    assert "call edit_config" in outputs[1] and "launch_training" in outputs[1]
    assert len(consistent(tmp_path / "ws").runs) == 1
    report = replay_trace(next((tmp_path / "ws" / "traces").glob("*.jsonl")),
                          tmp_path / "replayed")
    assert report.identical, report.divergence


PROSE = "I will raise dropout to 0.2 because the validation loss rises after epoch 2."


@pytest.mark.parametrize(("replies", "told"), [
    # a plan in prose before any tool call: told to edit and launch, then answer in JSON
    ([answer(PROSE), *iteration(0.2)], "it was prose, not a JSON object); you have not "
                                       "launched a training: call edit_config"),
    # a JSON answer of the wrong shape after the launch: told which field, and to answer
    ([*iteration(0.2)[:3], answer('{"step_type": "tiny", "plan": "p", "reason": "r"}'),
      decision()], "(step_type: Input should be 'small', 'medium', 'radical' or 'stop'); "
                   "answer with only a JSON object"),
], ids=["prose-first", "bad-field-after-launch"])
def test_an_unusable_answer_is_sent_back_once(replies: list[Reply], told: str,
                                              session: Session, tmp_path: Path) -> None:
    """An answer that is not the decision was a planning failure that spent the iteration
    ("Invalid JSON when parsing model output"); it is now sent back once with what is wrong
    and what to do, and the session replays identically."""
    with scripted_server(replies) as server:
        result = session(server)
        assert not server.script
        users = [request["body"]["messages"][-1] for request in server.requests]
    assert (result.stopped_by, result.wasted_iterations) == ("budget", 0)
    corrections = [m["content"] for m in users if m["role"] == "user"][1:]
    assert len(corrections) == 1 and told in corrections[0], corrections
    state = consistent(tmp_path / "ws")
    assert [(c.key, c.value) for c in state.runs[0].changes] == [("model.dropout", 0.2)]
    assert not events(tmp_path / "ws", "planning_failure")
    report = replay_trace(next((tmp_path / "ws" / "traces").glob("*.jsonl")),
                          tmp_path / "replayed")
    assert report.identical, report.divergence


def test_a_second_unusable_answer_spends_the_iteration(session: Session, tmp_path: Path,
                                                       ) -> None:
    """One correction only: a model that answers in prose again fails the iteration."""
    with scripted_server([answer(PROSE), answer(PROSE)]) as server:
        result = session(server)
        assert not server.script and len(server.requests) == 2
    assert result.wasted_iterations == 1
    assert len(events(tmp_path / "ws", "planning_failure")) == 1
