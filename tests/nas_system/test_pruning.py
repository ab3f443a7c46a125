"""Pruning: thresholds against Optuna's PercentilePruner, and pruning through launch_training."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from informer_nas.errors import ConfigError
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.gate import CandidateEvidence, IncumbentEvidence, evaluate_gate
from informer_nas.nas_system.local_executor import PRUNE_ENV, PRUNE_FILE, LocalSubprocessExecutor
from informer_nas.nas_system.pruning import (
    PruneFileRefresher,
    PruningSettings,
    plan_thresholds,
    prune_decision,
    read_val_curve,
    val_mse_by_epoch,
)
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import IterationScratch, load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.launch_training import confirm_with_seeds, launch_training

optuna.logging.set_verbosity(optuna.logging.WARNING)

Curve = dict[int, float]


def optuna_prune_epoch(completed: list[Curve], candidate: Curve,
                       settings: PruningSettings) -> int | None:
    """The epoch at which Optuna's PercentilePruner prunes ``candidate`` (step = epoch - 1)."""
    pruner = optuna.pruners.PercentilePruner(
        settings.effective_percentile, n_startup_trials=settings.n_startup_runs,
        n_warmup_steps=settings.n_warmup_epochs,
        n_min_trials=max(settings.n_startup_runs, 1),
    )
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for curve in completed:
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=min(curve.values()),
            intermediate_values={epoch - 1: value for epoch, value in curve.items()},
        ))
    trial = study.ask()
    for epoch in sorted(candidate):
        trial.report(candidate[epoch], epoch - 1)
        if trial.should_prune():
            return epoch
    return None


def our_prune_epoch(completed: list[Curve], candidate: Curve,
                    settings: PruningSettings) -> int | None:
    decision = prune_decision(candidate, plan_thresholds(completed, settings).thresholds)
    return decision.epoch if decision else None


def random_curve(rng: random.Random) -> Curve:
    """A noisy decreasing val-MSE curve of 1 to 6 epochs (ties on a coarse grid)."""
    level = rng.uniform(0.5, 1.5)
    curve = {}
    for epoch in range(1, rng.randint(1, 6) + 1):
        level *= rng.uniform(0.8, 1.1)
        curve[epoch] = round(level, 2)
    return curve


SETTINGS = [
    PruningSettings(),
    PruningSettings(kind="percentile", percentile=25.0),
    PruningSettings(kind="percentile", percentile=80.0, n_startup_runs=1, n_warmup_epochs=0),
    PruningSettings(n_startup_runs=0, n_warmup_epochs=2),
    PruningSettings(kind="percentile", percentile=0.0, n_startup_runs=5),
    PruningSettings(kind="percentile", percentile=100.0, n_startup_runs=2),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.kind}{s.percentile:g}-"
                         f"n{s.n_startup_runs}-w{s.n_warmup_epochs}")
def test_same_decisions_as_optuna_percentile_pruner(settings: PruningSettings) -> None:
    rng = random.Random(1234)
    pruned = 0
    for _ in range(60):
        completed = [random_curve(rng) for _ in range(rng.randint(0, 7))]
        candidate = random_curve(rng)
        expected = optuna_prune_epoch(completed, candidate, settings)
        assert our_prune_epoch(completed, candidate, settings) == expected, (completed, candidate)
        pruned += expected is not None
    assert pruned > 0 or settings.effective_percentile == 100.0  # the test has teeth


def test_compares_the_best_so_far_not_the_last_value() -> None:
    completed = [{1: 1.0, 2: 0.5}, {1: 1.0, 2: 0.6}, {1: 1.0, 2: 0.7}]
    settings = PruningSettings(n_warmup_epochs=0)
    recovered = {1: 0.55, 2: 0.9}  # epoch 2 worse than the median 0.6, but best 0.55 is not
    assert our_prune_epoch(completed, recovered, settings) is None
    assert optuna_prune_epoch(completed, recovered, settings) is None
    assert our_prune_epoch(completed, {1: 0.9, 2: 0.65}, settings) == 2


def test_warmup_epochs_are_never_pruned() -> None:
    completed = [{1: 0.1, 2: 0.1, 3: 0.1}] * 3
    hopeless = {1: 9.0, 2: 9.0, 3: 9.0}
    plan = plan_thresholds(completed, PruningSettings(n_warmup_epochs=2))
    assert sorted(plan.thresholds) == [3] and plan.counts == {3: 3}
    assert our_prune_epoch(completed, hopeless, PruningSettings(n_warmup_epochs=2)) == 3
    assert our_prune_epoch(completed, hopeless, PruningSettings(n_warmup_epochs=0)) == 1


def test_startup_runs_needed_at_each_epoch() -> None:
    completed = [{1: 0.1, 2: 0.1, 3: 0.1}, {1: 0.1, 2: 0.1, 3: 0.1}, {1: 0.1, 2: 0.1}]
    plan = plan_thresholds(completed, PruningSettings(n_startup_runs=3, n_warmup_epochs=0))
    assert plan.thresholds == {1: 0.1, 2: 0.1}  # only two runs reached epoch 3
    assert not plan_thresholds(completed[:2], PruningSettings()).thresholds


def test_kind_none_gives_no_thresholds() -> None:
    assert not plan_thresholds([{2: 1.0}] * 5, PruningSettings(kind="none")).thresholds


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "mean"}, "pruning kind must be one of median, percentile, none"),
    ({"percentile": 101.0}, r"percentile must be in \[0, 100\]"),
    ({"n_startup_runs": -1}, "must be >= 0"),
    ({"n_warmup_epochs": -2}, "must be >= 0"),
])
def test_bad_settings_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PruningSettings(**kwargs)


def test_history_parsing_and_nan() -> None:
    curve = val_mse_by_epoch([{"epoch": 1, "val_mse": 0.5}, {"epoch": 2, "val_mse": None},
                              {"epoch": "x"}])
    assert curve[1] == 0.5 and math.isnan(curve[2]) and len(curve) == 2
    assert prune_decision({1: math.nan}, {1: 5.0}) is not None  # all-NaN is pruned (Optuna)


def test_refresher_drops_thresholds_the_best_so_far_satisfies() -> None:
    written: list[dict[int, float]] = []
    refresher = PruneFileRefresher({2: 0.6, 3: 0.5, 4: 0.3}, written.append)
    refresher.on_event({"event": "step", "epoch": 1})
    refresher.on_event({"event": "epoch", "epoch": 1, "val_mse": 0.55})
    assert written == [{3: 0.5, 4: 0.3}]  # 0.55 already meets epoch 2's 0.6
    refresher.on_event({"event": "epoch", "epoch": 2, "val_mse": 0.9})  # nothing new cleared
    assert len(written) == 1


# ---- launch_training -------------------------------------------------------------------


def write_history(run_dir: Path, curve: Mapping[int, float]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    epochs = [{"epoch": e, "train_loss": v, "val_loss": v, "val_mse": v} for e, v in curve.items()]
    (run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))


def stub_trainer(curve: Curve) -> CallableExecutor:
    """Trains ``curve`` epoch by epoch, stopping as the real trainer does when pruned."""

    def train(request: TrainRequest) -> TrainOutcome:
        decision = prune_decision(curve, request.prune_thresholds or {})
        done = {e: v for e, v in curve.items() if decision is None or e <= decision.epoch}
        write_history(request.run_dir, done)
        (request.run_dir / "config_used.py").write_text(request.config_path.read_text())
        status = RunStatus.OK if decision is None else RunStatus.PRUNED
        reason = "" if decision is None else f"pruned after epoch {decision.epoch}"
        metrics = {"status": status.value, "reason": reason, "val_mse": min(done.values()),
                   "best_epoch": 1, "epochs_run": len(done)}
        return TrainOutcome(status, reason, metrics, 0.1, 0)

    return CallableExecutor(train)


def context(tmp_path: Path, curve: Curve, earlier: list[Curve], **settings: Any) -> ToolContext:
    workspace = Workspace.create(tmp_path / "ws", "tiny")
    state = load_state(workspace.paths)
    for index, done in enumerate(earlier):
        run_id = f"run_{index:04d}"
        state.runs.append(RunRecord(run_id=run_id, iteration=index + 1, status=RunStatus.OK,
                                    val_mse=min(done.values())))
        write_history(workspace.paths.run_dir(run_id), done)
    state.next_run_number = len(earlier)
    state.current = IterationScratch(iteration=len(earlier) + 1)
    return ToolContext(workspace, state, SessionSettings(**settings), stub_trainer(curve))


EARLIER = [{1: 1.0, 2: 0.5, 3: 0.4}, {1: 1.0, 2: 0.6, 3: 0.5}, {1: 1.0, 2: 0.7, 3: 0.6}]


def test_pruned_run_is_recorded_with_epoch_and_threshold(tmp_path: Path) -> None:
    ctx = context(tmp_path, {1: 1.2, 2: 0.9, 3: 0.3}, EARLIER)
    summary = json.loads(launch_training(ctx))
    request = ctx.executor.requests[0]  # type: ignore[attr-defined]
    assert request.prune_thresholds == {2: 0.6, 3: 0.5}
    record = load_state(ctx.workspace.paths).runs[-1]
    assert record.status is RunStatus.PRUNED and summary["status"] == "pruned"
    assert record.status_reason == ("pruned at epoch 2: best val_mse so far 0.9 > 0.6, the "
                                    "median of 3 earlier runs at epoch 2")
    assert summary["epochs_run"] == 2
    verdict = evaluate_gate(CandidateEvidence.from_record(record),
                            IncumbentEvidence("run_0000", 0.4), ctx.settings.thresholds)
    assert verdict.verdict == "reject" and verdict.is_decisive


def test_good_run_is_not_pruned_and_counts_later(tmp_path: Path) -> None:
    ctx = context(tmp_path, {1: 1.0, 2: 0.55, 3: 0.45}, EARLIER)
    assert json.loads(launch_training(ctx))["status"] == "ok"
    assert read_val_curve(ctx.workspace.paths.run_dir("run_0003")) == {1: 1.0, 2: 0.55, 3: 0.45}


def test_prune_off_or_too_few_runs_passes_no_thresholds(tmp_path: Path) -> None:
    off = context(tmp_path / "off", {1: 9.0, 2: 9.0}, EARLIER, prune=False)
    assert json.loads(launch_training(off))["status"] == "ok"
    assert off.executor.requests[0].prune_thresholds is None  # type: ignore[attr-defined]
    few = context(tmp_path / "few", {1: 9.0, 2: 9.0}, EARLIER[:2])
    assert json.loads(launch_training(few))["status"] == "ok"
    assert few.executor.requests[0].prune_thresholds is None  # type: ignore[attr-defined]


def test_confirmation_seeds_are_not_pruned(tmp_path: Path) -> None:
    ctx = context(tmp_path, {1: 1.0, 2: 0.55, 3: 0.45}, EARLIER)
    launch_training(ctx)
    confirm_with_seeds(ctx, "run_0003", [11, 12])
    requests = ctx.executor.requests  # type: ignore[attr-defined]
    assert requests[0].prune_thresholds and [r.prune_thresholds for r in requests[1:]] == [
        None, None]


def test_subprocess_executor_writes_the_prune_file_only_when_asked(tmp_path: Path) -> None:
    executor = LocalSubprocessExecutor()
    env = executor._child_env(tmp_path, None)
    assert PRUNE_ENV not in env and not (tmp_path / PRUNE_FILE).exists()
    env = executor._child_env(tmp_path, {2: 0.5})
    assert env[PRUNE_ENV] == str(tmp_path / PRUNE_FILE)
    assert json.loads((tmp_path / PRUNE_FILE).read_text()) == {"epoch_thresholds": {"2": 0.5}}


# A trainer that compares only the current epoch's val MSE (as informer/train.py does today).
CURRENT_VALUE_TRAINER = """
import json, os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
curve = json.load(open(args["--config"]))
for epoch, value in enumerate(curve, start=1):
    print(json.dumps({"event": "epoch", "epoch": epoch, "val_mse": value}), flush=True)
    time.sleep(0.3)  # the parent reads the event meanwhile
    thresholds = json.load(open(os.environ["NAS_PRUNE_FILE"]))["epoch_thresholds"]
    if value > thresholds.get(str(epoch), float("inf")):
        json.dump({"status": "pruned", "reason": f"pruned after epoch {epoch}"},
                  open(os.path.join(args["--run-dir"], "metrics.json"), "w"))
        sys.exit(5)
json.dump({"status": "ok", "val_mse": min(curve)},
          open(os.path.join(args["--run-dir"], "metrics.json"), "w"))
"""


def test_subprocess_executor_applies_the_best_so_far_rule(tmp_path: Path) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(CURRENT_VALUE_TRAINER)
    executor = LocalSubprocessExecutor(python_args=[str(script)])
    thresholds = {2: 0.6, 3: 0.5}
    recovered = tmp_path / "recovered.json"
    recovered.write_text(json.dumps([0.45, 0.7, 0.48]))  # epoch 2 > 0.6, best 0.45 is not
    outcome = executor.run(recovered, tmp_path / "a", 0, 30.0, None, thresholds)
    assert outcome.status is RunStatus.OK
    hopeless = tmp_path / "hopeless.json"
    hopeless.write_text(json.dumps([0.9, 0.8, 0.7]))
    outcome = executor.run(hopeless, tmp_path / "b", 0, 30.0, None, thresholds)
    assert outcome.status is RunStatus.PRUNED and outcome.reason == "pruned after epoch 2"
