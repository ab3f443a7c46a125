"""Ctrl+C during an agent run: a clean stop, no ``Exception ignored`` from the SDK's trace scope."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from informer_nas.agents.provider import run_async

SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("scope", default=None)
LLM_ENV_KEYS = ("NAS_LLM_BASE_URL", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "NAS_PLANNER_MODEL")


async def _tool() -> str:
    await asyncio.sleep(0)
    raise KeyboardInterrupt  # Ctrl+C inside a tool that runs as its own task


async def _single_tool() -> str:
    """Like the SDK's tool runner: on cancellation it awaits the tool task it started."""
    inner = asyncio.ensure_future(_tool())
    try:
        return await inner
    except asyncio.CancelledError:
        inner.cancel()
        return await inner  # hands the tool's KeyboardInterrupt on, stopping the loop again


async def _runner(finished: list[str]) -> str:
    """Like ``Runner.run``: a context-variable scope around tools run as tasks."""
    token = SCOPE.set("trace")
    try:
        return (await asyncio.gather(asyncio.ensure_future(_single_tool())))[0]
    finally:
        SCOPE.reset(token)  # ValueError if closed outside the task's Context
        finished.append("scope left")


def test_interrupt_unwinds_the_coroutine_in_its_own_context() -> None:
    unraisable: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    finished: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt):
            run_async(_runner(finished))
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert finished == ["scope left"]
    assert not unraisable, [str(u.exc_value) for u in unraisable]
    assert run_async(asyncio.sleep(0, result="next")) == "next"  # a fresh loop afterwards


def _wait_for_training(log: Path, process: subprocess.Popen[str], limit_s: float) -> None:
    """Wait until the trainer logs its first step ("training N parameters")."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if log.is_file() and "training " in log.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{log} showed no training within {limit_s} s")


@pytest.mark.slow
def test_sigint_during_nas_run_exits_130_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in LLM_ENV_KEYS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = tmp_path / "ws"
    process = subprocess.Popen(
        [sys.executable, "-m", "informer_nas.cli", "run", "--iters", "3", "--preset", "tiny",
         "--planner", "tpe", "--workspace", str(root)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The second iteration's training: there the old loop handling left the SDK's
        # Runner.run suspended, and the interpreter printed "Exception ignored in" at exit.
        _wait_for_training(root / "runs" / "run_0001" / "train.log", process, limit_s=180)
        process.send_signal(signal.SIGINT)  # only nas: the trainer has its own group
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert f"nas resume --workspace {root}" in stderr
    assert (root / "agent_state.json").is_file()


def test_sigterm_stops_a_session_command_like_ctrl_c() -> None:
    """Outside a training (where the executor forwards it), SIGTERM used to kill `nas run`
    at once, without the clean stop and the `nas resume` line; it now interrupts."""
    from informer_nas.cli.session_commands import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture
def survivable_sighup() -> Any:
    """SIGHUP recorded instead of killing pytest (as it did before `nas` handled it)."""
    received: list[int] = []
    before = signal.signal(signal.SIGHUP, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGHUP, before)


def test_sighup_stops_a_session_command_like_ctrl_c(survivable_sighup: list[int]) -> None:
    """Closing the terminal (SIGHUP) ended `nas run` like a crash: exit 129, no `nas resume`
    line, the run left `running`; it now interrupts, as SIGTERM does."""
    from informer_nas.cli.session_commands import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGHUP) is before and not survivable_sighup


def test_sighup_during_a_training_takes_the_forwarding_path(survivable_sighup: list[int]) -> None:
    """During a training the executor's forwarding handles SIGTERM (the trainer stops
    after its step and the session saves it as interrupted): SIGHUP takes the same path,
    and the forwarder knows it was SIGHUP (it was told SIGTERM, and the run's records said
    "stopped by SIGTERM"; tests/reliability/test_hangup.py follows it to the records)."""
    from informer_nas.cli.session_commands import _sigterm_as_interrupt
    from informer_nas.nas_system.process_signals import SignalForwarder

    with _sigterm_as_interrupt(), SignalForwarder() as forwarder:
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 5
        while forwarder.received is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert forwarder.received == signal.SIGHUP and not survivable_sighup


class HangUpPlanner:
    """A planner during whose turn the terminal is closed (SIGHUP outside a training)."""

    name = "hangup"

    def plan_iteration(self, ctx: Any, budget: Any) -> Any:
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGHUP did not stop the session")

    def finish_iteration(self, ctx: Any, record: Any) -> None:
        return None


def test_sighup_outside_a_training_is_recorded_as_sighup(survivable_sighup: list[int],
                                                         tmp_path: Path) -> None:
    """The session's stop names the signal (it said "interrupted by the user")."""
    from informer_nas.agents.policy import PolicyEvaluator
    from informer_nas.cli.session_commands import _sigterm_as_interrupt
    from informer_nas.nas_system.executor import CallableExecutor
    from informer_nas.nas_system.session import run_session
    from informer_nas.nas_system.settings import SessionSettings
    from informer_nas.nas_system.workspace import Workspace

    events: list[dict[str, Any]] = []
    workspace = Workspace.create(tmp_path / "ws", "tiny")
    executor = CallableExecutor(lambda request: pytest.fail("nothing trains"))
    with _sigterm_as_interrupt():
        result = run_session(workspace, HangUpPlanner(), PolicyEvaluator(), SessionSettings(),
                             executor, 2, events.append)
    assert (result.stopped_by, result.message) == ("interrupted", "stopped by SIGHUP")
    end = events[-1]
    assert (end["event"], end["message"]) == ("session_end", "stopped by SIGHUP")
    assert not survivable_sighup


def test_sighup_stays_ignored_under_nohup() -> None:
    from informer_nas.cli.session_commands import _sigterm_as_interrupt

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


HUNG_UP_CHILD = """
import sys, time
from informer_nas.cli.session_commands import _sigterm_as_interrupt
try:
    with _sigterm_as_interrupt():
        print("ready", flush=True)
        time.sleep(30)
except KeyboardInterrupt:
    print("interrupted; the state is saved", flush=True)  # to the closed terminal
    print("interrupted; the state is saved", file=sys.stderr, flush=True)
    sys.exit(130)
"""


def test_closing_the_terminal_is_a_clean_stop() -> None:
    """A real hang-up (the pty's master closed): the child gets SIGHUP and every write to
    its terminal fails with EIO; the stop must still end with the interruption's exit code."""
    import pty
    import select

    pid, master = pty.fork()
    if pid == 0:  # the child: session leader of the new terminal
        os.execv(sys.executable, [sys.executable, "-c", HUNG_UP_CHILD])
    output, deadline = b"", time.monotonic() + 30
    try:
        while b"ready" not in output and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                output += os.read(master, 1024)
    finally:
        os.close(master)  # the terminal is closed
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"still running after the hang-up; output {output!r}")
    assert b"ready" in output, output
    assert os.waitstatus_to_exitcode(status) == 130, (status, output)


def test_ctrl_c_during_a_training_is_still_an_interruption_by_the_user() -> None:
    """Only another signal is named: Ctrl+C (SIGINT) forwarded to a training stays
    "interrupted" on the last line, as outside a training."""
    from informer_nas.errors import interruption_reason
    from informer_nas.nas_system.executor import RunInterrupted, TrainOutcome
    from informer_nas.nas_system.records import RunStatus

    outcome = TrainOutcome(RunStatus.INTERRUPTED, "stopped by SIGINT")
    assert interruption_reason(RunInterrupted(outcome, signal.SIGINT)) == "interrupted by the user"
    assert interruption_reason(KeyboardInterrupt()) == "interrupted by the user"
    assert interruption_reason(RunInterrupted(outcome, signal.SIGHUP)) == "stopped by SIGHUP"
