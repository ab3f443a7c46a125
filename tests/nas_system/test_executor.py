"""LocalSubprocessExecutor against a fake trainer script (no torch, sub-second runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import LaunchError
from informer_nas.nas_system.executor import (
    CallableExecutor,
    RunInterrupted,
    TrainOutcome,
    TrainRequest,
)
from informer_nas.nas_system.local_executor import PRUNE_ENV, LocalSubprocessExecutor
from informer_nas.nas_system.records import RunStatus

# The fake trainer reads its behaviour from the "config" file (JSON) and follows the
# trainer contract: JSON lines on stdout, metrics.json in the run dir, exit codes.
FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    spec = json.load(open(args["--config"]))
    run_dir = args["--run-dir"]

    def write_metrics(status, **extra):
        metrics = {"status": status, "reason": extra.pop("reason", ""), "val_mse": 0.5,
                   "seed": int(args["--seed"]), **extra}
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f)

    def on_signal(signum, frame):
        write_metrics("interrupted", reason=f"signal {signum}")
        print(json.dumps({"event": "failed", "status": "interrupted"}), flush=True)
        sys.exit(130)

    if spec.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    if spec.get("pid_file"):
        open(spec["pid_file"], "w").write(str(os.getpid()))
    if spec.get("grandchild"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open(spec["grandchild"], "w").write(str(child.pid))
    print(json.dumps({"event": "start", "seed": int(args["--seed"]),
                      "prune_file": os.environ.get("NAS_PRUNE_FILE")}), flush=True)
    print("a plain log line", flush=True)
    for epoch in range(1, spec.get("epochs", 2) + 1):
        print(json.dumps({"event": "epoch", "epoch": epoch, "val_mse": 1.0 / epoch}), flush=True)
    time.sleep(spec.get("sleep", 0))
    if spec.get("kill_self"):  # as the OOM killer would
        os.kill(os.getpid(), spec["kill_self"])
    if spec.get("stderr"):
        sys.stderr.write(spec["stderr"] + "\\n")
    if spec.get("metrics", True):
        write_metrics(spec.get("status", "ok"), reason=spec.get("reason", ""))
    if spec.get("corrupt_metrics"):
        open(os.path.join(run_dir, "metrics.json"), "w").write("{not json")
    sys.exit(spec.get("exit", 0))
    """
)


@pytest.fixture
def trainer(tmp_path: Path) -> LocalSubprocessExecutor:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return LocalSubprocessExecutor(python_args=[str(script)], grace_s=0.5, poll_s=0.02)


def run(executor: LocalSubprocessExecutor, tmp_path: Path, timeout_s: float | None = 20.0,
        events: list[dict[str, Any]] | None = None, **spec: Any) -> TrainOutcome:
    config = tmp_path / "spec.json"
    config.write_text(json.dumps(spec))
    sink = events if events is not None else []
    return executor.run(config, tmp_path / "runs" / "run_0000", 7, timeout_s, sink.append)


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not is_alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_ok_run_streams_events_and_reads_metrics(trainer: LocalSubprocessExecutor,
                                                 tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    outcome = run(trainer, tmp_path, events=events, epochs=3)
    assert outcome.status is RunStatus.OK and outcome.exit_code == 0
    assert outcome.reason == ""
    assert outcome.metrics["val_mse"] == 0.5 and outcome.metrics["seed"] == 7
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "epoch"]
    assert events[0]["prune_file"] is None  # no pruning asked: the variable is unset
    assert (tmp_path / "runs" / "run_0000" / "stderr.log").exists()


@pytest.mark.parametrize(
    ("exit_code", "status"),
    [
        (1, RunStatus.CRASHED),  # exception in the trainer
        (2, RunStatus.INVALID_CONFIG),  # config refused
        (3, RunStatus.DIVERGED),  # NaN loss
        (4, RunStatus.OOM),  # out of memory
        (5, RunStatus.PRUNED),  # stopped by the pruner
        (130, RunStatus.INTERRUPTED),  # SIGINT/SIGTERM
        (77, RunStatus.CRASHED),  # an unknown code is a crash
    ],
    ids=["crashed", "invalid_config", "diverged", "oom", "pruned", "interrupted", "unknown"],
)
def test_exit_codes_map_to_status(trainer: LocalSubprocessExecutor, tmp_path: Path,
                                  exit_code: int, status: RunStatus) -> None:
    outcome = run(trainer, tmp_path, exit=exit_code, status=status.value, reason="why not")
    assert outcome.status is status
    assert outcome.exit_code == exit_code
    assert outcome.reason == "why not"  # taken from metrics.json


def test_failure_reason_falls_back_to_stderr(trainer: LocalSubprocessExecutor,
                                             tmp_path: Path) -> None:
    outcome = run(trainer, tmp_path, exit=1, metrics=False, stderr="ValueError: boom")
    assert outcome.status is RunStatus.CRASHED
    assert "ValueError: boom" in outcome.reason and outcome.metrics == {}


@pytest.mark.parametrize(
    "spec",
    [{"metrics": False}, {"corrupt_metrics": True}],
    ids=["missing", "corrupt"],  # exit 0 without usable metrics.json is a crash
)
def test_ok_exit_without_metrics_is_crash(trainer: LocalSubprocessExecutor, tmp_path: Path,
                                          spec: dict[str, Any]) -> None:
    outcome = run(trainer, tmp_path, **spec)
    assert outcome.status is RunStatus.CRASHED
    assert "metrics.json" in outcome.reason


def test_timeout_kills_the_group_including_a_grandchild(trainer: LocalSubprocessExecutor,
                                                        tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    outcome = run(trainer, tmp_path, timeout_s=1.0, sleep=60, grandchild=str(pid_file))
    assert time.monotonic() - started < 10
    assert outcome.status is RunStatus.TIMEOUT and "timeout" in outcome.reason
    # the trainer wrote "interrupted" on the SIGTERM; the run dir says what happened
    written = json.loads((tmp_path / "runs" / "run_0000" / "metrics.json").read_text())
    assert outcome.metrics["status"] == written["status"] == "timeout"
    assert written["reason"] == outcome.reason and written["val_mse"] == 0.5
    assert wait_dead(int(pid_file.read_text()))


def test_timeout_is_reported_as_a_timeout_not_an_interruption(
        trainer: LocalSubprocessExecutor, tmp_path: Path) -> None:
    # the trainer answers the timeout's SIGTERM with a "failed: interrupted" event; whoever
    # draws the events (nas train, a session's display) must read the timeout instead
    events: list[dict[str, Any]] = []
    outcome = run(trainer, tmp_path, timeout_s=1.0, sleep=60, events=events)
    failed = [event for event in events if event.get("event") == "failed"]
    assert [event["status"] for event in failed] == ["timeout"]
    assert failed[0]["reason"] == outcome.reason and "timeout of 1 s" in outcome.reason


def test_timeout_escalates_to_sigkill(trainer: LocalSubprocessExecutor, tmp_path: Path) -> None:
    outcome = run(trainer, tmp_path, timeout_s=0.5, sleep=60, ignore_term=True)
    assert outcome.status is RunStatus.TIMEOUT
    assert outcome.exit_code == -signal.SIGKILL


def test_prune_thresholds_reach_the_child(trainer: LocalSubprocessExecutor,
                                          tmp_path: Path) -> None:
    config = tmp_path / "spec.json"
    config.write_text("{}")
    events: list[dict[str, Any]] = []
    run_dir = tmp_path / "run"
    trainer.run(config, run_dir, 1, None, events.append, prune_thresholds={2: 0.4, 1: 0.9})
    prune_file = Path(events[0]["prune_file"])
    assert prune_file.parent == run_dir
    assert json.loads(prune_file.read_text()) == {"epoch_thresholds": {"1": 0.9, "2": 0.4}}


def test_prune_env_is_not_inherited(trainer: LocalSubprocessExecutor, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRUNE_ENV, "/stale/file.json")
    events: list[dict[str, Any]] = []
    run(trainer, tmp_path, events=events)
    assert events[0]["prune_file"] is None


def test_sigint_is_forwarded_then_raised(trainer: LocalSubprocessExecutor,
                                         tmp_path: Path) -> None:
    def interrupt_on_start(event: dict[str, Any]) -> None:
        if event["event"] == "start":
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C

    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"sleep": 60}))
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted) as caught:
        trainer.run(config, tmp_path / "run", 1, 30.0, interrupt_on_start)
    assert caught.value.signum == signal.SIGINT
    assert caught.value.outcome.status is RunStatus.INTERRUPTED
    assert caught.value.outcome.metrics["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored


def test_callback_error_kills_the_child(trainer: LocalSubprocessExecutor, tmp_path: Path) -> None:
    def explode(event: dict[str, Any]) -> None:
        raise RuntimeError("progress bar bug")

    pid_file = tmp_path / "grandchild.pid"
    config = _spec(tmp_path, sleep=60, grandchild=str(pid_file))
    with pytest.raises(RuntimeError, match="progress bar bug"):
        trainer.run(config, tmp_path / "run", 1, None, explode)
    assert wait_dead(int(pid_file.read_text()))


def _spec(tmp_path: Path, **spec: Any) -> Path:
    config = tmp_path / "spec.json"
    config.write_text(json.dumps(spec))
    return config


def test_missing_interpreter_is_launch_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(LaunchError, match="cannot start the trainer"):
        LocalSubprocessExecutor().run(_spec(tmp_path), tmp_path / "run", 1, 5.0)


def test_callable_executor_records_requests(tmp_path: Path) -> None:
    def stub(request: TrainRequest) -> TrainOutcome:
        return TrainOutcome(RunStatus.OK, "", {"val_mse": float(request.seed)}, 0.1, 0)

    executor = CallableExecutor(stub)
    outcome = executor.run(tmp_path / "c.py", tmp_path / "r", 3, None)
    assert outcome.metrics == {"val_mse": 3.0}
    assert executor.requests[0].seed == 3


def test_grandchild_left_behind_is_killed(trainer: LocalSubprocessExecutor,
                                          tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    outcome = run(trainer, tmp_path, grandchild=str(pid_file))  # it holds stdout open
    assert outcome.status is RunStatus.OK
    assert wait_dead(int(pid_file.read_text()))


def test_unforwarded_sigkill_is_a_crash(trainer: LocalSubprocessExecutor,
                                        tmp_path: Path) -> None:
    outcome = run(trainer, tmp_path, kill_self=int(signal.SIGKILL), metrics=False)
    assert outcome.status is RunStatus.CRASHED
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.reason == "killed by signal 9 (out of memory?)"


def test_unforwarded_other_signal_names_it(trainer: LocalSubprocessExecutor,
                                           tmp_path: Path) -> None:
    outcome = run(trainer, tmp_path, kill_self=int(signal.SIGSEGV), metrics=False)
    assert outcome.status is RunStatus.CRASHED
    assert outcome.reason == "killed by signal 11 (SIGSEGV)"


def test_forwarded_signal_then_kill_is_an_interruption(trainer: LocalSubprocessExecutor,
                                                       tmp_path: Path) -> None:
    def terminate_on_start(event: dict[str, Any]) -> None:
        if event["event"] == "start":
            os.kill(os.getpid(), signal.SIGTERM)  # forwarded; the child ignores it

    with pytest.raises(RunInterrupted) as caught:
        trainer.run(_spec(tmp_path, sleep=60, ignore_term=True), tmp_path / "run", 1, 30.0,
                    terminate_on_start)
    assert caught.value.outcome.exit_code == -signal.SIGKILL  # after the grace period
    assert caught.value.outcome.status is RunStatus.INTERRUPTED
    assert caught.value.outcome.reason == "killed by signal 9"


PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
    script, config, run_dir = sys.argv[1:]
    LocalSubprocessExecutor([script], grace_s=0.5, poll_s=0.02).run(
        Path(config), Path(run_dir), 1, None)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_child_dies_when_the_parent_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the session process must not leave its trainer running."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    pid_file = tmp_path / "trainer.pid"
    config = _spec(tmp_path, sleep=60, pid_file=str(pid_file))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(script), str(config),
                               str(tmp_path / "run")])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None, "no trainer started"
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert is_alive(child)
    finally:
        parent.kill()
        parent.wait()
    try:
        assert wait_dead(child, 10.0), "the trainer outlived its killed parent"
    finally:
        if is_alive(child):
            os.kill(child, signal.SIGKILL)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"  # it got SIGTERM: a clean stop


EVENT_WRITER_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from informer_nas.informer.train import EventWriter
    stops = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stops.append(signum))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the parent is gone
    emit = EventWriter(os.fdopen(write_end, "w"), Path("run"))
    emit({"event": "step", "loss": 1.0})
    emit({"event": "step", "loss": 0.5})  # ignored: the writer is closed
    print(json.dumps({"stops": stops, "open": emit.is_open}))
    """
)


def test_event_writer_requests_a_stop_when_the_parent_is_gone() -> None:
    result = subprocess.run([sys.executable, "-c", EVENT_WRITER_CHILD], capture_output=True,
                            text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == {"stops": [signal.SIGTERM], "open": False}
