"""The tpe brain: an interrupted and resumed session proposes what an uninterrupted one does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from agent_fakes import fake_curve, fake_train, fake_val_mse, pruning_fake_train
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from informer_nas.agents.brains.study import StudyBrain, config_problem, starting_params
from informer_nas.agents.brains.study_sampler import (
    STUDY_NAME,
    TPE_STARTUP_TRIALS,
    distributions,
    make_sampler,
    sampler_seed,
)
from informer_nas.agents.trace import read_trace
from informer_nas.api import run_nas_optimization
from informer_nas.informer.config import read_config_literal
from informer_nas.informer.presets import PRESETS, preset_config
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.param import readable_float
from informer_nas.nas_system.records import ConfigChange
from informer_nas.nas_system.search_space import flatten, search_space_for
from informer_nas.nas_system.state import IterationScratch, load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.edit_config import apply_changes

ITERS = 6


def run(root: Path, iters: int, executor: CallableExecutor | None = None) -> str:
    result = run_nas_optimization(root, iters=iters, planner="tpe", preset="tiny", seed=7,
                                  executor=executor or CallableExecutor(fake_train), quiet=True)
    return str(result.stopped_by)


def trained_configs(root: Path) -> list[dict[str, Any]]:
    """The tunable values each committed run trained, in order."""
    keys = set(search_space_for("tiny").keys)
    state = load_state(Workspace.open(root).paths)
    configs = []
    for run in state.runs:
        if run.verdict is None:
            continue
        flat = flatten(read_config_literal(root / "runs" / run.run_id / "config_used.py"))
        configs.append({k: v for k, v in flat.items() if k in keys})
    return configs


def test_resumed_session_proposes_the_same_configs(tmp_path: Path) -> None:
    run(tmp_path / "whole", ITERS)
    run(tmp_path / "split", 2)
    run(tmp_path / "split", ITERS)  # resume extends the budget
    whole = trained_configs(tmp_path / "whole")
    assert len(whole) == ITERS and len({str(c) for c in whole}) > 1
    assert trained_configs(tmp_path / "split") == whole


def test_crash_mid_iteration_reproposes_the_pending_trial(tmp_path: Path) -> None:
    calls = {"n": 0}

    def interrupt_third(request: TrainRequest) -> TrainOutcome:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl+C during the third training
        return fake_train(request)

    run(tmp_path / "whole", ITERS)
    assert run(tmp_path / "cut", ITERS, CallableExecutor(interrupt_third)) == "interrupted"
    run(tmp_path / "cut", ITERS)
    assert trained_configs(tmp_path / "cut") == trained_configs(tmp_path / "whole")
    state = load_state(Workspace.open(tmp_path / "cut").paths)
    assert [r.status.value for r in state.runs].count("interrupted") == 1


def test_study_agrees_with_the_runs(tmp_path: Path) -> None:
    run(tmp_path / "ws", 3)
    study = load_study(tmp_path / "ws")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    state = load_state(Workspace.open(tmp_path / "ws").paths)
    assert [t.user_attrs["run_id"] for t in complete] == [r.run_id for r in state.runs]
    assert [t.value for t in complete] == [r.val_mse for r in state.runs]
    assert not study.get_trials(states=(TrialState.RUNNING,))


def direct_sequence(iters: int, pruner: optuna.pruners.BasePruner | None = None
                    ) -> tuple[list[dict[str, Any]], list[TrialState]]:
    """Optuna driven by hand: ask, report each epoch's val MSE, prune or tell the value.

    As Optuna users do, the starting config (the preset's values of the searched keys) is
    enqueued first, so trial 0 is the baseline and sampling starts with trial 1.
    """
    space = search_space_for("tiny")
    base = preset_config("tiny").to_dict()
    study = optuna.create_study(direction="minimize", pruner=pruner)
    study.enqueue_trial({k: v for k, v in flatten(base).items() if k in space.keys},
                        skip_if_exists=True)
    direct: list[dict[str, Any]] = []
    while len(direct) < iters:
        study.sampler = make_sampler("tpe", sampler_seed(7, len(study.trials)))
        trial = study.ask(distributions(space))
        if config_problem(base, trial.params):
            study.tell(trial, state=TrialState.FAIL)
            continue
        direct.append(trial.params)
        written = {k: readable_float(v) if isinstance(v, float) else v
                   for k, v in trial.params.items()}  # as edit_config writes them
        val = fake_val_mse({**flatten(base), **written})
        for step, value in enumerate(fake_curve(val)):
            trial.report(value, step)
            if pruner is not None and trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, val)
    told = [t.state for t in study.trials if t.state != TrialState.FAIL]
    return direct, told


def test_optuna_driven_directly_proposes_the_same_sequence(tmp_path: Path) -> None:
    """The agent layer does not change the optimizer (issue 7's equivalence): same sampler,
    same seeds, and the starting config enqueued first, give the identical sequence."""
    run(tmp_path / "ws", 4)
    direct, _ = direct_sequence(4)
    assert direct[0] == {k: v for k, v in flatten(preset_config("tiny").to_dict()).items()
                         if k in search_space_for("tiny").keys}
    assert [rounded(c) for c in trained_configs(tmp_path / "ws")] == [rounded(c) for c in direct]
    complete = load_study(tmp_path / "ws").get_trials(states=(TrialState.COMPLETE,))
    for trial in complete:  # as trial.report(val_mse, epoch - 1) would have left them
        assert trial.value is not None
        curve = fake_curve(trial.value)
        assert trial.intermediate_values == pytest.approx(dict(enumerate(curve)))


def test_guided_proposals_match_optuna_with_a_fresh_sampler_per_ask(tmp_path: Path) -> None:
    """Past TPE's start-up trials, the brain's samplers share one intersection search space
    (``share_search_space``: each fresh one re-read every past trial). Proposals must stay
    those of a fresh sampler per ask (Optuna by hand), including asks after configs told
    FAIL for breaking a rule and across a resume (a new brain, its cache rebuilt)."""
    iters = TPE_STARTUP_TRIALS + 6
    run(tmp_path / "ws", 4)
    run(tmp_path / "ws", iters)
    direct, _ = direct_sequence(iters)
    assert [rounded(c) for c in trained_configs(tmp_path / "ws")] == [rounded(c) for c in direct]
    trials = load_study(tmp_path / "ws").trials
    assert any(t.state == TrialState.FAIL for t in trials)  # a rule broken: asked again
    assert len({str(rounded(c)) for c in direct[TPE_STARTUP_TRIALS + 1:]}) > 1


def test_pruned_trials_match_optuna_with_its_pruner(tmp_path: Path) -> None:
    """Pruned runs are told PRUNED with their partial curves, as Optuna's pruner does."""
    iters = 8
    run(tmp_path / "ws", iters, CallableExecutor(pruning_fake_train))
    pruner = optuna.pruners.PercentilePruner(50.0, n_startup_trials=3, n_warmup_steps=1,
                                             n_min_trials=3)
    direct, told = direct_sequence(iters, pruner)
    assert TrialState.PRUNED in told  # the scenario exercises pruning
    assert [rounded(c) for c in trained_configs(tmp_path / "ws")] == [rounded(c) for c in direct]
    study = load_study(tmp_path / "ws")
    ours = [t for t in study.trials if t.state != TrialState.FAIL]
    assert [t.state for t in ours] == told
    for trial in ours:
        if trial.state == TrialState.PRUNED:
            assert trial.intermediate_values and trial.value == trial.intermediate_values[1]


def load_study(root: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "study.journal")))
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)


def rounded(config: dict[str, Any]) -> dict[str, Any]:
    return {k: float(f"{v:.9g}") if isinstance(v, float) else v for k, v in sorted(config.items())}


def test_resume_without_a_seed_keeps_the_sessions_seed(tmp_path: Path) -> None:
    run(tmp_path / "whole", 4)  # seed 7 throughout
    run(tmp_path / "split", 2)
    run_nas_optimization(tmp_path / "split", iters=4, executor=CallableExecutor(fake_train),
                         planner="tpe", quiet=True)  # like `nas resume`: no seed given
    assert trained_configs(tmp_path / "split") == trained_configs(tmp_path / "whole")


def starting_values(root: Path) -> dict[str, Any]:
    """The searched keys' values in the workspace's starting config."""
    keys = set(search_space_for("tiny").keys)
    return {k: v for k, v in flatten(read_config_literal(root / "config.py")).items()
            if k in keys}


def test_first_run_is_the_starting_config(tmp_path: Path) -> None:
    """Iteration 1 trains the workspace's starting config, with no edit (the baseline)."""
    root = tmp_path / "ws"
    Workspace.create(root, "tiny")
    start = starting_values(root)
    run(root, 2)
    first, second = trained_configs(root)
    assert first == start and second != start
    state = load_state(Workspace.open(root).paths)
    assert state.runs[0].changes == [] and state.runs[1].changes
    trace = next((root / "traces").glob("*.jsonl"))
    plans = [r["plan"] for r in read_trace(trace) if r["kind"] == "event" and r["name"] == "plan"]
    assert plans[0] == "tpe trial 0: baseline: the starting config"
    study = load_study(root)
    assert study.trials[0].params == start and study.trials[0].state == TrialState.COMPLETE


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_user_config_is_the_baseline_and_outside_values_are_sampled(
        tmp_path: Path, sampler: str) -> None:
    """A user's own config.py is the baseline; a value outside the space is left to the
    sampler (the enqueued trial fixes only the others)."""
    root = tmp_path / "ws"
    paths = Workspace.create(root, "tiny").paths
    space = search_space_for("tiny")
    dropout = space["model.dropout"]
    assert dropout.high is not None
    outside = ConfigChange(key="model.dropout", value=float(dropout.high) + 0.05)
    inside = ConfigChange(key="training.optimizer_params.lr", value=space.validate(
        "training.optimizer_params.lr", space["training.optimizer_params.lr"].example()))
    paths.config.write_text(apply_changes(paths.config.read_text(), [outside, inside]))
    brain = StudyBrain(paths, sampler, 0, space)  # type: ignore[arg-type]
    state = load_state(paths)
    state.current = IterationScratch(iteration=1)
    config = read_config_literal(paths.config)
    proposal = brain.propose(state, config)
    start = {k: v for k, v in flatten(config).items() if k in space.keys}
    assert proposal.baseline and proposal.trial_number == 0
    assert proposal.params["training.optimizer_params.lr"] == inside.value
    assert {k: v for k, v in proposal.params.items() if k != "model.dropout"} == {
        k: v for k, v in start.items() if k != "model.dropout"}
    assert space.validate("model.dropout", proposal.params["model.dropout"]) is not None
    assert [c.key for c in proposal.changes] == ["model.dropout"]


@pytest.mark.parametrize("kill", ["after the enqueue", "inside the ask"])
def test_kill_around_the_enqueue_keeps_the_baseline(tmp_path: Path, kill: str) -> None:
    """A kill after enqueueing the starting config, or inside the ask that dequeues it,
    changes nothing: the resumed session proposes the baseline, then what an uninterrupted
    session proposes."""

    def proposals(root: Path, killed: bool) -> list[dict[str, Any]]:
        paths = Workspace.create(root, "tiny").paths
        config = read_config_literal(paths.config)
        if killed:
            brain = StudyBrain(paths, "tpe", 7, search_space_for("tiny"))
            state = load_state(paths)
            brain._enqueue_start(brain.study(), state, config)
            if kill == "inside the ask":  # dequeued, never tagged: an orphan trial
                brain.study(7).ask(brain.distributions)
        brain = StudyBrain(paths, "tpe", 7, search_space_for("tiny"))  # the resumed process
        result = []
        for iteration in (1, 2, 3):
            state = load_state(paths)
            state.current = IterationScratch(iteration=iteration)
            result.append(brain.propose(state, config).params)
            study = brain.study()
            trial = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[-1]
            study.tell(trial.number, float(iteration))
        assert len(brain.study().get_trials(states=(TrialState.WAITING,))) == 0
        return result

    killed = proposals(tmp_path / "killed", True)
    assert killed == proposals(tmp_path / "whole", False)
    assert killed[0] == starting_values(tmp_path / "killed")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_its_own_baseline(preset: str) -> None:
    """Each preset's values lie inside its space, so its baseline fixes every searched key."""
    space = search_space_for(preset)
    config = preset_config(preset).to_dict()  # type: ignore[arg-type]
    params = starting_params(space, distributions(space), config)
    assert set(params) == set(space.keys)
    assert not config_problem(config, params)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_narrowed_workspace_is_searched_inside_its_narrowing(
        tmp_path: Path, sampler: str) -> None:
    """Every trial of a workspace made with a narrowing lies inside it; pinned keys stay."""
    narrowing = {"model.d_model": {"choices": [32, 64]}, "model.revin": {"choices": [True]},
                 "training.max_epochs": {"low": 2, "high": 2},
                 "model.dropout": {"low": 0.0, "high": 0.05}}
    root = tmp_path / "ws"
    Workspace.create(root, "tiny", narrowing=narrowing)
    run_nas_optimization(root, iters=ITERS, planner=sampler, seed=3, quiet=True,
                         executor=CallableExecutor(fake_train))
    configs = trained_configs(root)
    assert len(configs) == ITERS
    assert all(c["model.d_model"] in (32, 64) and c["model.revin"] is True
               and c["training.max_epochs"] == 2 and 0.0 <= c["model.dropout"] <= 0.05
               for c in configs)
    distributions = load_study(root).trials[-1].distributions
    assert distributions["model.d_model"].choices == (32, 64)  # what the sampler drew from
    assert distributions["model.revin"].choices == (True,)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_neighbouring_seeds_search_different_configs(tmp_path: Path, sampler: str) -> None:
    """Seeds 1 and 2 are two searches, not one search shifted by an iteration (a user
    repeats a search with several seeds to see how much its result varies)."""
    configs = []
    for seed in (1, 2):
        root = tmp_path / f"seed{seed}"
        run_nas_optimization(root, iters=4, planner=sampler, preset="tiny", seed=seed,
                             executor=CallableExecutor(fake_train), quiet=True)
        configs.append([rounded(c) for c in trained_configs(root)[1:]])  # after the baseline
    assert not [c for c in configs[0] if c in configs[1]]


def test_a_study_lock_left_by_a_kill_does_not_stall_the_next_session(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A SIGKILL while Optuna held its symlink lock left it behind, and every later session
    waited 30 s for it to go stale ("It is taking longer than 10.0 seconds to acquire the
    lock file"). Sessions hold the workspace lock and no longer take the study's."""
    from informer_nas.nas_system.doctor import diagnose

    root = tmp_path / "ws"
    run(root, 1)
    lock = root / "study.journal.lock"
    lock.symlink_to(root / "study.journal")  # as Optuna's JournalFileSymlinkLock makes it
    with caplog.at_level("WARNING"):
        run(root, 2)
    assert not [r for r in caplog.records if "acquire the lock" in r.getMessage()
                or "Forcibly" in r.getMessage()]
    assert lock.is_symlink()  # never waited on, never forcibly released
    assert [f.subject for f in diagnose(root).findings] == ["study.journal.lock"]
    diagnose(root, repair=True)
    assert not lock.is_symlink() and diagnose(root).is_healthy


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_hand_edited_values_the_schema_converts_stay_in_the_baseline(
        tmp_path: Path, sampler: str) -> None:
    """``32.0`` for an integer width, ``True`` for one layer, ``"0.3"`` for a probability:
    config.py accepts them as the trainer reads them, so the first run trains them (the
    sampler picked those keys instead, silently)."""
    root = tmp_path / "ws"
    paths = Workspace.create(root, "tiny").paths
    text = paths.config.read_text()
    for key, value in (("d_model", "32.0"), ("e_layers", "True"), ("dropout", '"0.3"')):
        text = re.sub(rf'("{key}": )[^,\n]+', rf"\g<1>{value}", text, count=1)
    paths.config.write_text(text)
    config = read_config_literal(paths.config)
    assert flatten(config)["model.d_model"] == 32.0  # the edit took
    brain = StudyBrain(paths, sampler, 0, search_space_for("tiny"))  # type: ignore[arg-type]
    state = load_state(paths)
    state.current = IterationScratch(iteration=1)
    proposal = brain.propose(state, config)
    assert proposal.baseline
    assert (proposal.params["model.d_model"], proposal.params["model.e_layers"],
            proposal.params["model.dropout"]) == (32, 1, 0.3)
