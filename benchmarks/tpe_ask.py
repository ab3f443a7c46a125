"""How long the tpe brain takes to propose a config, against the number of past trials.

A synthetic history (no training): a ``tiny`` workspace whose study journal holds N told
trials (sampled at random over the search space, values from a smooth function of them,
with their 3-epoch curves, every iteration committed in the state), then the brain's
``propose`` timed as a session calls it: once cold (a fresh ``StudyBrain``, as at the
start or resume of a session: it loads the journal) and then warm (the next iterations of
the same session, each proposal told before the next one). Optuna's own cost is timed
beside it: one ``TPESampler`` asked over the same trials in an in-memory study. The last
column hashes the proposals: it must not change with a change to the brain's speed.
Times are CPU seconds of this process (``time.process_time``), which other work on a shared
machine inflates far less than wall time; the journal's fsync waits are left out of them.

    python benchmarks/tpe_ask.py                 # N = 50, 200, 500
    python benchmarks/tpe_ask.py --trials 50 200 --warm 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState, create_trial

from informer_nas.agents.brains.study import StudyBrain
from informer_nas.agents.brains.study_sampler import (
    STUDY_NAME,
    distributions,
    make_sampler,
    sampler_seed,
)
from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.state import IterationScratch, load_state
from informer_nas.nas_system.workspace import Workspace

SEED = 7


def value_of(params: dict[str, Any]) -> float:
    """A smooth synthetic objective of the numeric values (what it is does not matter)."""
    total = 0.0
    for key, value in sorted(params.items()):
        number = float(value) if isinstance(value, int | float) else len(str(value))
        total += math.log1p(abs(number)) * (1 + len(key) % 3)
    return 0.3 + (total % 1.0)


def synthetic_trials(count: int, dists: dict[str, Any]) -> list[optuna.trial.FrozenTrial]:
    """``count`` complete trials sampled at random over ``dists``, tagged with iterations."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = []
    for number in range(count):
        trial = study.ask(dists)
        value = value_of(trial.params)
        study.tell(trial, value)
        trials.append(create_trial(
            params=trial.params, distributions=dists, value=value, state=TrialState.COMPLETE,
            user_attrs={"iteration": number + 1, "run_id": f"run_{number:04d}"},
            intermediate_values={0: value * 1.3, 1: value * 1.1, 2: value}))
    return trials


def history(root: Path, count: int) -> tuple[Workspace, list[optuna.trial.FrozenTrial]]:
    """A tiny workspace with ``count`` committed iterations and the study's told trials."""
    workspace = Workspace.create(root, "tiny")
    state = load_state(workspace.paths)
    space = workspace.search_space(state)
    trials = synthetic_trials(count, distributions(space))
    brain = StudyBrain(workspace.paths, "tpe", SEED, space)
    brain.study().add_trials(trials)
    for trial in trials:
        state.runs.append(RunRecord(
            run_id=trial.user_attrs["run_id"], iteration=trial.user_attrs["iteration"],
            status=RunStatus.OK, val_mse=trial.value, accepted=False, verdict="reject"))
    state.iteration = state.max_iterations = count
    return workspace, trials


def timed_proposals(workspace: Workspace, count: int, warm: int) -> list[float]:
    """Seconds of each of ``1 + warm`` proposals of a fresh brain after ``count`` trials."""
    state = load_state(workspace.paths)
    state.runs = [RunRecord(run_id=f"run_{n:04d}", iteration=n + 1, status=RunStatus.OK,
                            val_mse=1.0, accepted=False, verdict="reject") for n in range(count)]
    state.iteration = count
    config = read_config_literal(workspace.paths.config)
    brain = StudyBrain(workspace.paths, "tpe", SEED, workspace.search_space(state))
    seconds = []
    for iteration in range(count + 1, count + 2 + warm):
        state.current = IterationScratch(iteration=iteration)
        started = time.process_time()
        proposal = brain.propose(state, config)
        seconds.append(time.process_time() - started)
        brain.study().tell(proposal.trial_number, value_of(proposal.params))
        state.iteration = iteration
    return seconds


def optuna_alone(trials: list[optuna.trial.FrozenTrial], dists: dict[str, Any],
                 repeats: int) -> float:
    """Median seconds of one TPE ask over ``trials`` in an in-memory study, with one sampler
    for all asks (Optuna used as its users do: its caches kept)."""
    study = optuna.create_study(direction="minimize",
                                sampler=make_sampler("tpe", sampler_seed(SEED, len(trials))))
    study.add_trials(trials)
    seconds = []
    for _ in range(repeats):
        started = time.process_time()
        trial = study.ask(dists)
        seconds.append(time.process_time() - started)
        study.tell(trial, value_of(trial.params))
    return statistics.median(seconds)


def proposals_digest(workspace: Workspace, count: int) -> str:
    """A short hash of every proposal after the synthetic history (same digest: same
    proposals)."""
    storage = StudyBrain(workspace.paths, "tpe", SEED,
                         workspace.search_space(load_state(workspace.paths))).storage
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    proposed = [trial.params for trial in study.trials[count:]]
    return hashlib.sha1(json.dumps(proposed, sort_keys=True).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--warm", type=int, default=5, help="warm proposals timed per size")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    random.seed(0)
    print(f"{'trials':>6} {'cold propose':>13} {'warm propose':>13} {'warm min':>9} "
          f"{'optuna TPE ask':>15}  proposals   (CPU seconds; warm: median of --warm)")
    for count in args.trials:
        with tempfile.TemporaryDirectory() as directory:
            workspace, trials = history(Path(directory) / "ws", count)
            seconds = timed_proposals(workspace, count, args.warm)
            dists = distributions(workspace.search_space(load_state(workspace.paths)))
            alone = optuna_alone(trials, dists, args.warm)
            digest = proposals_digest(workspace, count)
        print(f"{count:>6} {seconds[0]:>13.3f} {statistics.median(seconds[1:]):>13.3f} "
              f"{min(seconds[1:]):>9.3f} {alone:>15.3f}  {digest}")


if __name__ == "__main__":
    main()
