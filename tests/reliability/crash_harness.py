"""Crash campaigns: start ``nas`` commands, ``kill -9`` them at random instants, check.

Shared by ``test_crash.py`` and ``benchmarks/crash.py``. The ``nas`` processes come from
``session_forkserver.py`` (the real CLI, imported once and forked per command) and train
with ``fake_trainer.py`` (or the real trainer). Violations are collected, not raised, so
that a benchmark can count them and a test can assert there are none.

What is checked (issue 6, see ``crash_checks.py``):
- after every kill: the state loads and validates (``load_state``: snapshot + journal);
  every run finished before is still there with the same status and metrics; run ids are
  contiguous and no run directory lacks a record; no iteration was committed twice;
  ``config.py`` is the incumbent's ``config_used.py`` (or, after a torn accept, the pending
  run's, which the next start restores); every complete trace line parses;
- after the final ``nas resume``: the budget is complete, nothing is left running,
  ``config.py`` equals the incumbent's ``config_used.py``, at most one run was recomputed
  per crash, a run that had finished when the process died was judged, not retrained,
  the Optuna study agrees with the runs, and ``nas doctor`` finds the workspace healthy;
- optionally, the committed configs equal those of an uninterrupted session.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crash_checks import (
    check_config,
    check_doctor,
    check_preserved,
    check_state,
    check_study,
    check_traces,
    committed_configs,
    committed_runs,
    finished_runs,
    kill_phase,
    orphan_trials,
    run_view,
)
from forkserver_client import ForkServer, children_of

from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunStatus
from informer_nas.nas_system.state import AgentState, load_state


@dataclass
class CampaignResult:
    """What a crash campaign did and found."""

    injections: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    resumed_ok: int = 0
    recomputed: int = 0
    violations: list[str] = field(default_factory=list)
    finished_early: int = 0
    orphan_trials: int = 0
    phases: dict[str, int] = field(default_factory=dict)
    reference_divergences: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: CampaignResult) -> None:
        self.injections += other.injections
        for kind, count in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + count
        self.resumed_ok += other.resumed_ok
        self.recomputed += other.recomputed
        self.violations += other.violations
        self.finished_early += other.finished_early
        self.orphan_trials += other.orphan_trials
        for phase, count in other.phases.items():
            self.phases[phase] = self.phases.get(phase, 0) + count
        self.reference_divergences += other.reference_divergences
        self.seconds += other.seconds


@dataclass
class Campaign:
    """One workspace, a chain of ``nas run`` / ``nas resume`` killed at random instants.

    Args:
        server: the fork server.
        root: the workspace directory (created with ``nas init --preset tiny``).
        rng: the random source of the kill instants (seeded by the caller).
        iters: the initial iteration budget.
        max_delay: the kill instant is uniform in [0, max_delay] s after the start...
        training_share: ...or, with this probability, drawn just after a trainer started.
        env: extra environment of the commands.
    """

    server: ForkServer
    root: Path
    rng: random.Random
    iters: int = 6
    max_delay: float = 2.0
    training_share: float = 0.4
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 300.0

    @property
    def paths(self) -> WorkspacePaths:
        return WorkspacePaths(self.root.resolve())

    @property
    def log(self) -> Path:
        return self.root.parent / f"{self.root.name}.log"

    def nas(self, argv: list[str]) -> int:
        return self.server.run([*argv, "--workspace", str(self.root)], self.root.parent,
                               self.log, self.timeout, self.env)

    def start(self, argv: list[str]) -> int:
        return self.server.spawn([*argv, "--workspace", str(self.root)], self.root.parent,
                                 self.log, self.env)

    def init(self) -> str:
        code = self.nas(["init", "--preset", "tiny"])
        assert code == 0, f"nas init failed ({code}); see {self.log}"
        return self.paths.config.read_text(encoding="utf-8")

    def after_kill(self, result: CampaignResult, before: dict[str, tuple[Any, ...]],
                   initial: str) -> tuple[AgentState | None, dict[str, tuple[Any, ...]]]:
        """The checks right after a kill; returns the state and its finished runs."""
        state, problems = check_state(self.paths)
        problems += check_traces(self.paths)
        if state is not None:
            problems += check_preserved(before, state, "after kill")
            problems += check_config(self.paths, state, initial, allow_pending=True)
        result.violations += [f"injection {result.injections}: {p}" for p in problems]
        if state is None:
            return None, before
        return state, {**finished_runs(state), **committed_runs(state)}

    def kill_main(self, injections: int, result: CampaignResult, initial: str) -> AgentState:
        """``kill -9`` the session process ``injections`` times, resuming in between.

        A resume that ran without error until the next kill (or its end) counts as
        resumed ok for the crash before it.
        """
        before: dict[str, tuple[Any, ...]] = {}
        argv = ["run", "--iters", str(self.iters), "--planner", "tpe", "--quiet"]
        pending_checks: list[tuple[str, tuple[Any, ...]]] = []
        unresolved = 0
        start = result.injections
        while result.injections - start < injections:
            pid = self.start(argv)
            code = self.wait_for_kill_instant(pid)
            argv = ["resume", "--quiet"]
            if code is not None:  # finished before the kill: extend the budget
                result.finished_early += 1
                if code != 0:
                    result.violations.append(f"a session exited {code}; see {self.log}")
                    return self.finish(result, initial, pending_checks, unresolved,
                                       result.injections - start)
                result.resumed_ok += unresolved
                unresolved = 0
                state = load_state(self.paths)
                argv = ["resume", "--quiet", "--iters", str(state.max_iterations + 3)]
                continue
            self.server.kill(pid)
            result.resumed_ok += unresolved
            unresolved = 1
            result.injections += 1
            result.kinds["kill -9 nas"] = result.kinds.get("kill -9 nas", 0) + 1
            state, before = self.after_kill(result, before, initial)
            phase = kill_phase(state)
            result.phases[phase] = result.phases.get(phase, 0) + 1
            if state is not None and state.current and state.current.launched_run_id:
                run = next(r for r in state.runs if r.run_id == state.current.launched_run_id)
                if run.status.is_finished and run.status is not RunStatus.INTERRUPTED:
                    pending_checks.append((run.run_id, run_view(run)))
            if state is not None and state.iteration >= state.max_iterations:
                argv = ["resume", "--quiet", "--iters", str(state.max_iterations + 3)]
        return self.finish(result, initial, pending_checks, unresolved,
                           result.injections - start)

    def wait_for_kill_instant(self, pid: int) -> int | None:
        """Wait until the instant to kill ``pid``; its exit code if it ended before.

        With probability ``training_share`` the instant is drawn after its trainer
        started (uniform in [0, 0.6] s: mid-training, or just after, while the verdict is
        being committed), else uniform in [0, ``max_delay``] s after its start.
        """
        if self.rng.random() >= self.training_share:
            return self.server.wait(pid, self.rng.uniform(0.0, self.max_delay))
        delay = self.rng.uniform(0.0, 0.6)
        deadline = time.monotonic() + 60
        while not children_of(pid) and time.monotonic() < deadline:
            code = self.server.wait(pid, 0.01)
            if code is not None:
                return code
        return self.server.wait(pid, delay)

    def kill_trainers(self, injections: int, result: CampaignResult, initial: str,
                      max_delay: float = 0.15) -> AgentState:
        """``kill -9`` only the trainer subprocess of ``injections`` runs; the session goes on.

        Each killed run must be recorded (status interrupted, or crashed, with a reason
        naming signal 9) and rejected, and the session must finish its budget without a
        resume. A kill drawn after the trainer's exit hits nothing and is not counted.
        """
        killed: set[int] = set()
        argv = ["run", "--iters", str(self.iters), "--planner", "tpe", "--quiet"]
        while len(killed) < injections:
            pid = self.start(argv)
            seen: set[int] = set()
            while (code := self.server.wait(pid, 0.01)) is None:
                fresh = [c for c in children_of(pid) if c not in seen]
                seen.update(fresh)
                if fresh and len(killed) < injections:
                    time.sleep(self.rng.uniform(0.0, max_delay))
                    try:
                        os.kill(fresh[0], signal.SIGKILL)
                        killed.add(fresh[0])
                    except ProcessLookupError:
                        pass
            if code != 0:
                result.violations.append(f"session with trainer kills exited {code}")
                break
            state = load_state(self.paths)
            argv = ["resume", "--quiet", "--iters", str(state.max_iterations + 3)]
        state, problems = check_state(self.paths)
        assert state is not None, problems
        hit = [r for r in state.runs if "signal 9" in r.status_reason]
        for run in hit:
            killed_status = run.status in (RunStatus.INTERRUPTED, RunStatus.CRASHED)
            if not killed_status or run.verdict != "reject":
                problems.append(f"{run.run_id}: trainer killed, recorded {run.status.value} "
                                f"with verdict {run.verdict}")
        landed = len(hit)
        result.injections += landed  # a kill after the trainer's exit hit nothing
        result.kinds["kill -9 trainer"] = result.kinds.get("kill -9 trainer", 0) + landed
        result.resumed_ok += landed if not problems else 0
        result.violations += problems
        return self.finish(result, initial, [], 0, 0)

    def finish(self, result: CampaignResult, initial: str,
               pending: list[tuple[str, tuple[Any, ...]]], unresolved: int,
               kills: int) -> AgentState:
        """The final ``nas resume`` and the checks of a complete budget."""
        code = self.nas(["resume", "--quiet"])
        if code != 0:
            result.violations.append(f"final resume exited {code}; see {self.log}")
        else:
            result.resumed_ok += unresolved
        state, problems = check_state(self.paths)
        assert state is not None, problems
        if state.iteration != state.max_iterations or state.current is not None:
            problems.append(f"budget not complete: {state.iteration}/{state.max_iterations}")
        problems += [f"{r.run_id} left running" for r in state.runs
                     if r.status is RunStatus.RUNNING]
        problems += check_config(self.paths, state, initial, allow_pending=False)
        problems += check_traces(self.paths) + check_study(self.paths, state)
        problems += check_doctor(self.paths)
        abandoned = [r for r in state.runs if r.verdict is None]
        result.recomputed += len(abandoned)
        if len(abandoned) > kills:
            problems.append(f"{len(abandoned)} runs recomputed after {kills} crashes")
        for run_id, view in pending:  # finished when killed: judged, not retrained
            run = next(r for r in state.runs if r.run_id == run_id)
            if run.verdict is None or run_view(run) != view:
                problems.append(f"{run_id} had finished at the kill but was not judged as is")
        result.orphan_trials += orphan_trials(self.paths)
        result.violations += problems
        return state

    def compare_with_reference(self, result: CampaignResult, state: AgentState,
                               reference_root: Path) -> None:
        """Run the same budget uninterrupted; the committed configs must be the same.

        A difference is a violation, unless the crashed study holds an orphan trial (a
        kill inside ``study.ask``): then it is reported in ``reference_divergences``.
        """
        reference = Campaign(self.server, reference_root, self.rng, env=self.env)
        reference.init()
        code = reference.nas(["run", "--iters", str(state.max_iterations), "--planner", "tpe",
                              "--quiet"])
        if code != 0:
            result.violations.append(f"reference session exited {code}")
            return
        expected = committed_configs(reference.paths, load_state(reference.paths))
        actual = committed_configs(self.paths, state)
        differing = sorted(i for i in expected if expected[i] != actual.get(i))
        if not differing:
            return
        message = (f"{self.root.name}: iterations {differing} differ from an uninterrupted "
                   f"session")
        if orphan_trials(self.paths):
            result.reference_divergences.append(f"{message} (orphan trial in the study)")
        else:
            result.violations.append(message)
