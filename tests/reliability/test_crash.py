"""Crash safety: ``kill -9`` at random instants, then ``nas resume`` completes the budget.

The ``nas`` processes are real CLI processes (forked from ``session_forkserver.py`` after
the imports, so that each start costs milliseconds) training with ``fake_trainer.py``;
the kill instants come from a seeded ``random.Random``. What is checked after each kill
and after the final resume is listed in ``crash_harness.py``. The slow tests add more
injections and one kill of a fresh ``python -m informer_nas.cli`` process training with
the real trainer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crash_checks import check_config, check_doctor, check_state, check_study, check_traces
from crash_harness import Campaign, CampaignResult
from forkserver_client import ForkServer, children_of

from informer_nas.nas_system.lock import lock_status
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunStatus
from informer_nas.nas_system.state import load_state


def report(result: CampaignResult) -> str:
    return (f"{result.injections} injections {result.phases or result.kinds}, "
            f"{result.recomputed} recomputed, violations: {result.violations}, "
            f"divergences: {result.reference_divergences}")


def test_kill_nas_process_at_random_instants(forkserver: ForkServer, tmp_path: Path) -> None:
    """Eight kills of ``nas run``/``nas resume``; the search ends as an uninterrupted one.

    Even a kill inside ``study.ask`` (an orphan trial) must not change what is proposed:
    ``compare_with_reference`` reports such a divergence apart, and it is asserted here
    (see also ``test_kill_inside_study_ask_keeps_the_proposal``).
    """
    campaign = Campaign(forkserver, tmp_path / "ws", random.Random(20260601), iters=4,
                        max_delay=1.6)
    result = CampaignResult()
    state = campaign.kill_main(8, result, campaign.init())
    campaign.compare_with_reference(result, state, tmp_path / "reference")
    assert result.injections == 8
    assert not result.violations, report(result)
    assert not result.reference_divergences, report(result)
    assert result.resumed_ok == result.injections, report(result)
    assert result.recomputed <= result.injections


def test_kill_only_the_trainer(forkserver: ForkServer, tmp_path: Path) -> None:
    """Five SIGKILLs of the trainer subprocess: each run recorded and rejected, no resume."""
    campaign = Campaign(forkserver, tmp_path / "ws", random.Random(7), iters=6)
    result = CampaignResult()
    campaign.kill_trainers(5, result, campaign.init())
    assert not result.violations, report(result)
    assert result.injections >= 3, report(result)  # a kill may come after a trainer's exit
    state = load_state(campaign.paths)
    killed = [r for r in state.runs if "signal 9" in r.status_reason]
    assert killed and all(r.accepted is False and r.val_mse is None for r in killed)
    assert all(r.status in (RunStatus.INTERRUPTED, RunStatus.CRASHED) for r in killed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_kill_nas_process_more_instants(forkserver: ForkServer, tmp_path: Path,
                                        seed: int) -> None:
    """Six more kills per seed, over a longer window (more kills land mid-iteration)."""
    campaign = Campaign(forkserver, tmp_path / "ws", random.Random(seed), iters=5,
                        max_delay=2.5)
    result = CampaignResult()
    state = campaign.kill_main(6, result, campaign.init())
    campaign.compare_with_reference(result, state, tmp_path / "reference")
    assert not result.violations, report(result)
    assert not result.reference_divergences, report(result)
    assert result.resumed_ok == result.injections == 6


def test_second_nas_run_refuses_and_names_the_holder(forkserver: ForkServer,
                                                     tmp_path: Path) -> None:
    """Two ``nas run`` on one workspace: the second exits 1 with one line naming the pid."""
    campaign = Campaign(forkserver, tmp_path / "ws", random.Random(0), iters=40)
    campaign.init()
    first = campaign.start(["run", "--iters", "40", "--planner", "tpe", "--quiet"])
    try:
        deadline = time.monotonic() + 60
        # The holder opens its own trace just after taking the lock, then records its session
        # in the state: wait for all three, so the snapshot below holds the holder's trace
        # and session and only the second run could add one.
        while not (lock_status(campaign.paths)[1] and any(
                p.name.endswith(f"-{first}.jsonl") for p in campaign.paths.traces.iterdir())
                   and any(s.session_id.endswith(f"-{first}")
                           for s in load_state(campaign.paths).sessions)):
            assert time.monotonic() < deadline, "the first session never took the lock"
            time.sleep(0.05)
        sessions = [s.session_id for s in load_state(campaign.paths).sessions]
        traces = sorted(campaign.paths.traces.iterdir())
        err = tmp_path / "second.err"
        code = forkserver.run(["run", "--iters", "40", "--planner", "tpe", "--quiet",
                               "--workspace", str(campaign.root)], tmp_path,
                              tmp_path / "second.out", timeout=120, err_log=err)
        lines = err.read_text().splitlines()
        assert code == 1
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: workspace ") and f"pid {first}" in lines[0], lines
        assert "in use" in lines[0]
        assert forkserver.wait(first, 0) is None, "the first session must go on"
        assert [s.session_id for s in load_state(campaign.paths).sessions] == sessions
        # Refusing means leaving the holder's workspace alone: no trace of its own.
        assert sorted(campaign.paths.traces.iterdir()) == traces
    finally:
        forkserver.kill(first)


@pytest.mark.parametrize("orphans", [1, 2])
def test_kill_inside_study_ask_keeps_the_proposal(tmp_path: Path, orphans: int) -> None:
    """A kill between ``study.ask`` and tagging the trial with its iteration leaves an
    orphan trial (told FAIL on resume); the resumed session must still propose what an
    uninterrupted one would (issue 4: tpe resume determinism)."""
    from informer_nas.agents.brains.study import StudyBrain
    from informer_nas.informer.config import read_config_literal
    from informer_nas.nas_system.search_space import search_space_for
    from informer_nas.nas_system.state import IterationScratch
    from informer_nas.nas_system.workspace import Workspace

    def propose(root: Path, killed_asks: int) -> dict[str, object]:
        paths = Workspace.create(root, "tiny").paths
        brain = StudyBrain(paths, "tpe", 0, search_space_for("tiny"))
        for _ in range(killed_asks):  # what each kill -9 inside study.ask leaves behind
            brain.study(0).ask(brain.distributions)
        state = load_state(paths)
        state.current = IterationScratch(iteration=1)
        return brain.propose(state, read_config_literal(paths.config)).params

    assert propose(tmp_path / "killed", orphans) == propose(tmp_path / "uninterrupted", 0)


@pytest.mark.slow
def test_kill_fresh_cli_process_with_the_real_trainer(tmp_path: Path) -> None:
    """``python -m informer_nas.cli run`` with the real trainer, killed as its trainer starts.

    ``nas resume`` completes the budget, and the trainer the kill orphaned stops instead of
    training to completion beside the resumed session.
    """
    root = tmp_path / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "NAS_LLM_BASE_URL"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "informer_nas.cli"]
    subprocess.run([*cli, "init", "--preset", "tiny", "--workspace", str(root)], check=True,
                   env=env, cwd=tmp_path, capture_output=True, timeout=120)
    initial = (root / "config.py").read_text()
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen([*cli, "run", "--iters", "2", "--planner", "tpe", "--quiet",
                                    "--workspace", str(root)], env=env, cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT)
        trainer = wait_for_trainer(process, timeout=240)
        time.sleep(random.Random(3).uniform(0.2, 1.0))  # the trainer is still importing torch
        process.send_signal(signal.SIGKILL)
        process.wait()
    orphan_alive = wait_gone(trainer, timeout=60)
    paths = WorkspacePaths(root.resolve())
    state = load_state(paths)
    assert [r.status for r in state.runs] == [RunStatus.RUNNING]
    resumed = subprocess.run([*cli, "resume", "--quiet", "--workspace", str(root)], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    final, problems = check_state(paths)
    assert final is not None and final.iteration == final.max_iterations == 2
    problems += check_config(paths, final, initial, allow_pending=False)
    problems += check_traces(paths) + check_study(paths, final) + check_doctor(paths)
    assert not problems
    assert sum(r.verdict is None for r in final.runs) <= 1
    # The trainer the kill orphaned must stop, not train on beside the resumed session.
    assert not orphan_alive, f"the orphaned trainer (pid {trainer}) ran 60 s on"
    metrics = paths.run_dir("run_0000") / "metrics.json"
    orphan = json.loads(metrics.read_text()) if metrics.is_file() else {}
    assert orphan.get("status") != "ok", "the orphaned trainer trained to completion"


def wait_for_trainer(process: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the session ended before training"
        children = children_of(process.pid)
        if children:
            return children[0]
        time.sleep(0.05)
    raise AssertionError("no trainer started")


def wait_gone(pid: int, timeout: float) -> bool:
    """True if ``pid`` still runs after ``timeout`` s (then it is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return False
        if state == "Z":
            return False
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return True
