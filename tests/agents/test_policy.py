"""The offline evaluator: accept a borderline only when it beats the incumbent beyond noise."""

from __future__ import annotations

import pytest

from informer_nas.agents.policy import PolicyEvaluator, policy_outcome
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.gate import GateThresholds, GateVerdict
from informer_nas.nas_system.records import RunRecord, RunStatus, SeedResult
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace

BORDERLINE = GateVerdict("borderline", ("between thresholds",))


def _never_trains(request: TrainRequest) -> TrainOutcome:
    raise AssertionError("the policy never trains")


def record(run_id: str, main: float, confirmations: dict[int, float]) -> RunRecord:
    seeds = [SeedResult(seed=s, status=RunStatus.OK, val_mse=v, run_dir=f"runs/{run_id}/seed_{s}")
             for s, v in confirmations.items()]
    return RunRecord(run_id=run_id, iteration=0, status=RunStatus.OK, seed=0, val_mse=main,
                     seeds=seeds)


def context(workspace: Workspace, candidate: RunRecord, incumbent: RunRecord,
            noise_t: float = 3.0) -> ToolContext:
    state = load_state(workspace.paths)
    state.runs = [incumbent, candidate]
    state.incumbent_run_id = incumbent.run_id
    settings = SessionSettings(thresholds=GateThresholds(noise_t=noise_t))
    return ToolContext(workspace, state, settings, CallableExecutor(_never_trains))


def test_single_seed_better_is_accepted(workspace: Workspace) -> None:
    ctx = context(workspace, record("run_0001", 0.99, {}), record("run_0000", 1.0, {}))
    outcome = PolicyEvaluator().judge(ctx, "run_0001", BORDERLINE)
    assert outcome.accept and outcome.decided_by == "policy"
    assert "single seed" in outcome.reason and "run_0000" in outcome.reason


def test_single_seed_worse_is_rejected(workspace: Workspace) -> None:
    ctx = context(workspace, record("run_0001", 1.001, {}), record("run_0000", 1.0, {}))
    outcome = policy_outcome(ctx, "run_0001")
    assert not outcome.accept and "does not beat" in outcome.reason


def test_consistent_gain_over_shared_seeds_is_accepted(workspace: Workspace) -> None:
    incumbent = record("run_0000", 1.0, {1: 1.0, 2: 1.0})
    candidate = record("run_0001", 0.99, {1: 0.991, 2: 0.989})  # about -1 % on every seed
    assert policy_outcome(context(workspace, candidate, incumbent), "run_0001").accept


@pytest.mark.parametrize("noise_t, accept", [(3.0, False), (0.1, True)])
def test_gain_within_seed_noise_needs_the_t_statistic(workspace: Workspace, noise_t: float,
                                                      accept: bool) -> None:
    # Mean better (0.99 vs 1.0) but one seed much worse: paired t about 0.3.
    incumbent = record("run_0000", 1.0, {1: 1.0, 2: 1.0})
    candidate = record("run_0001", 0.95, {1: 1.04, 2: 0.98})
    outcome = policy_outcome(context(workspace, candidate, incumbent, noise_t), "run_0001")
    assert outcome.accept is accept
    if not accept:
        assert "seed noise" in outcome.reason and "paired t" in outcome.reason


def test_mean_over_shared_seeds_decides_not_the_main_seed(workspace: Workspace) -> None:
    incumbent = record("run_0000", 1.0, {1: 1.0, 2: 1.0})
    candidate = record("run_0001", 0.9, {1: 1.06, 2: 1.07})  # lucky main seed only
    outcome = policy_outcome(context(workspace, candidate, incumbent), "run_0001")
    assert not outcome.accept and "does not beat" in outcome.reason


def test_nothing_to_compare_is_rejected(workspace: Workspace) -> None:
    ctx = context(workspace, record("run_0001", 0.9, {}), record("run_0000", 1.0, {}))
    outcome = policy_outcome(ctx, "run_9999", prefix="evaluator failed; ")
    assert not outcome.accept
    assert outcome.reason == "evaluator failed; nothing to compare: rejected"
