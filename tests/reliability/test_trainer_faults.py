"""Trainer faults: each failed run is recorded with its status and reason, rejected, and
the session goes on.

One ``nas run`` (the real CLI, forked from the fork server) trains with ``fake_trainer.py``
whose runs 1 to 8 fail each in their own way: NaN loss, a caught exception, an uncaught
one, a simulated out-of-memory, SIGTERM, a hang past ``--timeout`` (stopping on SIGTERM),
a hang that ignores SIGTERM (killed after the grace period), exit 0 without metrics.
The slow test makes the real trainer diverge on a series with huge values and lr 1.0.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from crash_checks import check_doctor, check_state, check_study, config_used
from crash_harness import Campaign
from forkserver_client import ForkServer

from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
from informer_nas.nas_system.records import RunStatus

TIMEOUT_S = 3
# run id -> (fault, expected status, a part of the expected reason)
FAULTS: dict[str, tuple[str, RunStatus, str]] = {
    "run_0001": ("nan", RunStatus.DIVERGED, "training loss became nan"),
    "run_0002": ("exception", RunStatus.CRASHED, "RuntimeError: injected failure"),
    "run_0003": ("raise", RunStatus.CRASHED, "exit code 1: RuntimeError: injected uncaught"),
    "run_0004": ("oom", RunStatus.OOM, "out of memory"),
    "run_0005": ("sigterm", RunStatus.INTERRUPTED, "stopped by SIGTERM"),
    "run_0006": ("hang", RunStatus.TIMEOUT, f"exceeded the timeout of {TIMEOUT_S} s"),
    "run_0007": ("hang_hard", RunStatus.TIMEOUT, f"exceeded the timeout of {TIMEOUT_S} s"),
    "run_0008": ("nometrics", RunStatus.CRASHED, "exit 0 but"),
}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_failed_runs_are_recorded_rejected_and_the_session_goes_on(
        forkserver: ForkServer, tmp_path: Path, trainer_pid_dir: Path) -> None:
    env = {"FAKE_TRAINER_FAULTS": ",".join(f"{run}={fault}" for run, (fault, _, _)
                                           in FAULTS.items())}
    campaign = Campaign(forkserver, tmp_path / "ws", random.Random(0), env=env)
    campaign.init()
    before = set(trainer_pid_dir.iterdir())
    code = campaign.nas(["run", "--iters", str(len(FAULTS) + 2), "--planner", "tpe",
                         "--timeout", str(TIMEOUT_S), "--quiet"])
    assert code == 0, campaign.log.read_text()[-2000:]
    state, problems = check_state(campaign.paths)
    assert state is not None and not problems, problems
    assert state.iteration == state.max_iterations == len(FAULTS) + 2
    assert state.current is None and not campaign.paths.candidate.exists()
    runs = {run.run_id: run for run in state.runs}
    assert runs["run_0000"].status is RunStatus.OK and state.incumbent_run_id != "run_0001"
    for run_id, (fault, status, reason) in FAULTS.items():
        run = runs[run_id]
        assert (run.status, run.verdict, run.accepted, run.decided_by) == (
            status, "reject", False, "rules"), (fault, run)
        assert reason in run.status_reason, (fault, run.status_reason)
        assert run.val_mse is None, fault
    assert runs[f"run_{len(FAULTS) + 1:04d}"].status is RunStatus.OK  # and it went on
    incumbent = config_used(campaign.paths, state.incumbent_run_id)
    assert campaign.paths.config.read_text(encoding="utf-8") == incumbent
    assert not check_study(campaign.paths, state) + check_doctor(campaign.paths)
    # No trainer outlives its run, the one that ignored SIGTERM included.
    started = [int(p.name) for p in set(trainer_pid_dir.iterdir()) - before]
    assert len(started) == len(FAULTS) + 2
    assert not [pid for pid in started if alive(pid)]


@pytest.mark.slow
def test_real_trainer_diverges_on_a_runaway_optimizer(tmp_path: Path, config_file_factory: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The real trainer: SGD at lr 1.0 with momentum 0.99 blows the weights up within the
    first epoch's 32 steps (every seed tried; RMSprop at lr 1.0 stayed finite for some
    seeds): diverged, exit 3. (Data too large for float32 is refused before training, as a
    data fault: ``test_data.py``.)"""
    config = config_file_factory(
        "tiny", training={"max_epochs": 1, "max_train_windows": 1024, "max_eval_windows": 32,
                          "optimizer_class": "SGD",
                          "optimizer_params": {"lr": 1.0, "momentum": 0.99}})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    outcome = LocalSubprocessExecutor().run(config, tmp_path / "run", 0, timeout_s=300)
    assert outcome.status is RunStatus.DIVERGED, outcome
    assert outcome.exit_code == 3 and "loss became" in outcome.reason
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["val_mse"] is None
