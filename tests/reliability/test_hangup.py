"""Closing the terminal (SIGHUP) stops ``nas run`` cleanly, and the records say SIGHUP.

The command is a real CLI process (forked from ``session_forkserver.py``) training with
``fake_trainer.py``; the trainer gets SIGTERM, its stop request, while the run's records,
the trace and the console name the signal the session received.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from forkserver_client import ForkServer

from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunStatus
from informer_nas.nas_system.state import load_state


def wait_for(path: Path, pid: int, server: ForkServer, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert server.wait(pid, 0.02) is None, f"nas exited before {path} existed"
        assert time.monotonic() < deadline, f"{path} did not appear within {limit_s} s"


def test_sighup_during_a_training_is_recorded_as_sighup(forkserver: ForkServer,
                                                       tmp_path: Path) -> None:
    """It was recorded as "stopped by SIGTERM" (the run, metrics.json, the console) and the
    last line said only "interrupted"."""
    root, out, err = tmp_path / "ws", tmp_path / "out.log", tmp_path / "err.log"
    assert forkserver.run(["init", "--preset", "tiny", "--workspace", str(root)], tmp_path,
                          out) == 0
    pid = forkserver.spawn(["run", "--iters", "2", "--planner", "tpe", "--workspace",
                            str(root)], tmp_path, out, env={"FAKE_TRAINER_EPOCH_S": "2"},
                           err_log=err)
    run_dir = root / "runs" / "run_0000"
    wait_for(run_dir / "config_used.py", pid, forkserver)  # the trainer handles signals now
    os.kill(pid, signal.SIGHUP)
    assert forkserver.wait(pid, 60) == 130, out.read_text() + err.read_text()
    assert err.read_text().strip().splitlines()[-1] == (
        f"stopped by SIGHUP; the state is saved. Continue with: nas resume --workspace {root}")
    assert "training interrupted: stopped by SIGHUP" in out.read_text()
    run = load_state(WorkspacePaths(root.resolve())).runs[0]
    assert (run.status, run.status_reason) == (RunStatus.INTERRUPTED, "stopped by SIGHUP")
    assert json.loads((run_dir / "metrics.json").read_text())["reason"] == "stopped by SIGHUP"
    trace = next((root / "traces").glob("*.jsonl")).read_text().splitlines()
    end = json.loads(next(line for line in trace if '"session_end"' in line))
    assert (end["stopped_by"], end["message"]) == ("interrupted", "stopped by SIGHUP")
    assert "SIGTERM" not in (root / "nas.log").read_text().replace(
        "forwarding SIGTERM to the trainer", "")
    # the same clean stop: the resumed session redoes the iteration and finishes
    assert forkserver.run(["resume", "--workspace", str(root)], tmp_path, out) == 0
    state = load_state(WorkspacePaths(root.resolve()))
    assert state.iteration == 2 and [r.status for r in state.runs[1:]] == [RunStatus.OK] * 2
