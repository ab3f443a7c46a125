"""The Optuna study of the offline brains (tpe, random, hybrid), driven by ask/tell.

The study lives in the workspace (``study.journal``, a ``JournalStorage``). Every trial
carries the iteration it was asked for (user attribute ``iteration``); results are told
from the committed run records, never from memory, so ``sync`` can run at any time and
repairs whatever a crash left:

- a trial whose iteration was committed with a run is first given the run's val MSE per
  epoch as intermediate values (step = epoch - 1, as ``trial.report`` would), then told
  the run's value (the mean over confirmation seeds when there is one), ``PRUNED`` (Optuna
  then takes the last intermediate value, so TPE ranks the pruned trial by its partial
  curve) or ``FAIL``;
- a trial whose iteration was committed without a run (a planning failure) is told FAIL;
- a trial whose iteration is still to be done (the process died before the verdict) is
  reused for that iteration, so the same config is proposed again.

The first proposal of a workspace is its starting config (``config.py``'s values of the
searched keys; a value outside the space is left to the sampler), enqueued before the first
ask as Optuna users do with ``study.enqueue_trial``: trial 0 is the baseline, and sampling
starts with trial 1. The enqueue is repeated, until the first trial is tagged, unless a
waiting trial already holds it, so a kill after the enqueue or inside the ask changes
nothing.

The sampler is created fresh for each ask with the seed ``sampler_seed(base_seed, n)``, ``n``
the number of trials tagged with an iteration so far (in an uninterrupted session,
``trial.number``): an untagged trial, left by a kill inside ``study.ask``, shifts no seed,
so with the same told history a resumed session proposes exactly what an uninterrupted one
would. The samplers of one brain share TPE's intersection search space (see
``study_sampler.share_search_space``), which a fresh sampler would rebuild from every past
trial. Sampled configs that break a cross-field rule (``label_len > seq_len``) are told
FAIL and a new trial is asked; FAIL trials do not shape TPE's densities.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, cast

import optuna
from optuna.distributions import BaseDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from informer_nas.agents.brains.study_sampler import (
    STUDY_NAME,
    HeldByWorkspace,
    SamplerName,
    distributions,
    make_sampler,
    sampler_seed,
    share_search_space,
)
from informer_nas.errors import ConfigError
from informer_nas.informer.config import read_config_literal, validate_config
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.pruning import read_val_curve
from informer_nas.nas_system.records import ConfigChange, RunRecord, RunStatus
from informer_nas.nas_system.search_space import SearchSpace, flatten
from informer_nas.nas_system.state import AgentState

logger = logging.getLogger(__name__)

MAX_INVALID_ASKS = 50


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of a nested config with dotted-key values set."""
    result = {section: dict(values) if isinstance(values, dict) else values
              for section, values in base.items()}
    for key, value in params.items():
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            child = dict(node.get(part, {}))
            node[part] = child
            node = child
        node[leaf] = value
    return result


def same_value(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 1e-9 relative (configs round to 12 digits)."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class Proposal:
    """One trial's proposal: its number, sampled values and the changes to the incumbent."""

    trial_number: int
    params: dict[str, Any]
    changes: list[ConfigChange]
    sampler_seed: int
    completed_trials: int
    baseline: bool = False


class StudyBrain:
    """Ask/tell over the workspace's study for one sampler.

    Args:
        paths: the workspace paths (``paths.study`` is the journal file).
        sampler: ``tpe`` or ``random``.
        base_seed: the ``n``-th tagged trial is sampled with ``sampler_seed(base_seed, n)``.
        space: the search space (the preset's, not widened, so it never changes).
    """

    def __init__(self, paths: WorkspacePaths, sampler: SamplerName, base_seed: int,
                 space: SearchSpace) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.paths = paths
        self.sampler_name: SamplerName = sampler
        self.base_seed = base_seed
        self.space = space
        self.distributions = distributions(space)
        # Optuna's lock base class is private (optuna.storages.journal._file): duck-typed
        self.storage = JournalStorage(JournalFileBackend(
            str(paths.study), lock_obj=cast(Any, HeldByWorkspace())))
        self.current: Proposal | None = None
        self._study: optuna.Study | None = None
        self._search_space: IntersectionSearchSpace | None = None  # of this brain's study

    def study(self, seed: int | None = None) -> optuna.Study:
        """The study, with a fresh sampler seeded ``seed`` (default: the base seed)."""
        sampler = make_sampler(self.sampler_name, self.base_seed if seed is None else seed)
        self._search_space = share_search_space(sampler, self._search_space)
        if self._study is None:
            try:
                self._study = optuna.load_study(study_name=STUDY_NAME, storage=self.storage,
                                                sampler=sampler)
            except KeyError:
                self._study = optuna.create_study(study_name=STUDY_NAME, storage=self.storage,
                                                  sampler=sampler, direction="minimize")
        self._study.sampler = sampler
        return self._study

    def sync(self, state: AgentState) -> None:
        """Tell every trial whose iteration was committed (idempotent)."""
        study = self.study()
        committed = {run.iteration: run for run in state.runs if run.verdict is not None}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            iteration = trial.user_attrs.get("iteration")
            if not isinstance(iteration, int):
                study.tell(trial.number, state=TrialState.FAIL)
            elif iteration in committed:
                self._tell_run(study, trial, committed[iteration])
            elif iteration <= state.iteration:
                study.tell(trial.number, state=TrialState.FAIL)  # planning failure

    def overridden(self, iteration: int) -> bool:
        """Whether the proposal of this (committed) iteration was overridden by another
        config (``sync`` first: it marks the proposals it finds overridden)."""
        return any(trial.user_attrs.get("iteration") == iteration
                   and trial.user_attrs.get("overridden") is True
                   for trial in self.study().get_trials(deepcopy=False,
                                                        states=(TrialState.FAIL,)))

    def _tell_run(self, study: optuna.Study, trial: FrozenTrial, run: RunRecord) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, "run_id", run.run_id)
        actual = self._actual_params(run)
        if actual is not None and not self._matches(trial.params, actual):
            study._storage.set_trial_user_attr(trial._trial_id, "overridden", True)
            study.tell(trial.number, state=TrialState.FAIL)
            self._add_actual(study, run, actual)
            return
        self._report_curve(study, trial, run)
        value, state = run_value(run)
        study.tell(trial.number, value, state=state)

    def _report_curve(self, study: optuna.Study, trial: FrozenTrial, run: RunRecord) -> None:
        """Report the run's val MSE per epoch (steps already reported are kept: idempotent)."""
        for step, value in self._intermediate_values(run).items():
            if step not in trial.intermediate_values:
                study._storage.set_trial_intermediate_value(trial._trial_id, step, value)

    def _intermediate_values(self, run: RunRecord) -> dict[int, float]:
        """``{epoch - 1: val_mse}`` of the run's ``history.json`` ({} when it has none)."""
        curve = read_val_curve(self.paths.run_dir(run.run_id))
        return {epoch - 1: value for epoch, value in sorted(curve.items())}

    def _actual_params(self, run: RunRecord) -> dict[str, Any] | None:
        path = self.paths.run_dir(run.run_id) / "config_used.py"
        try:
            flat = flatten(read_config_literal(path))
        except ConfigError:
            return None
        return {key: flat[key] for key in self.distributions if key in flat}

    @staticmethod
    def _matches(params: dict[str, Any], actual: dict[str, Any]) -> bool:
        return all(same_value(value, actual.get(key)) for key, value in params.items())

    def _add_actual(self, study: optuna.Study, run: RunRecord, actual: dict[str, Any]) -> None:
        """Record an overridden proposal's real config as its own trial."""
        value, state = run_value(run)
        if any(not self.distributions[k]._contains(
                self.distributions[k].to_internal_repr(v)) for k, v in actual.items()):
            logger.info("%s: config outside the search space; not added to the study",
                        run.run_id)
            return
        trial = optuna.trial.create_trial(
            params=actual, distributions={k: self.distributions[k] for k in actual},
            value=value if state == TrialState.COMPLETE else None, state=state,
            user_attrs={"iteration": run.iteration, "run_id": run.run_id},
            intermediate_values=self._intermediate_values(run),
        )
        study.add_trial(trial)

    def propose(self, state: AgentState, config: dict[str, Any]) -> Proposal:
        """The proposal for the iteration in progress (a pending trial is reused).

        Args:
            state: the live state (``state.current.iteration`` is the iteration).
            config: the incumbent config (nested), which the changes apply to; read with the
                schema's conversions, as the trainer reads it.
        """
        assert state.current is not None, "propose is called during an iteration"
        config = _as_trained(config)
        self.sync(state)
        iteration = state.current.iteration
        study = self.study()
        trial = self._pending_valid(study, iteration, config)
        if trial is None:
            self._enqueue_start(study, state, config)
            trial = self._ask_valid(iteration, config)
        completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        flat = flatten(config)
        changes = [ConfigChange(key=k, value=v) for k, v in trial.params.items()
                   if not same_value(v, flat.get(k))]
        seed = sampler_seed(self.base_seed, tagged_before(study, trial.number))
        self.current = Proposal(trial.number, dict(trial.params), changes, seed, completed,
                                baseline="fixed_params" in trial.system_attrs)
        return self.current

    def _enqueue_start(self, study: optuna.Study, state: AgentState,
                       config: dict[str, Any]) -> None:
        """Enqueue the starting config as the first trial (first proposal of a workspace).

        Nothing is enqueued once a trial was tagged or a run recorded. ``skip_if_exists``
        is not enough to make this idempotent: it also skips when a kill inside
        ``study.ask`` left the dequeued starting config as an untagged trial (told FAIL by
        ``sync``), which was never proposed. So the enqueue is skipped only while a waiting
        trial holds it (a kill between the enqueue and the ask).
        """
        if state.runs or tagged_before(study, None):
            return
        params = starting_params(self.space, self.distributions, config)
        if not params:
            return
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        study.enqueue_trial(params)

    @staticmethod
    def _pending_valid(study: optuna.Study, iteration: int,
                       config: dict[str, Any]) -> FrozenTrial | None:
        """The trial already asked for ``iteration``, if any and valid.

        A kill between tagging a trial and telling it invalid leaves it pending: it is told
        FAIL here, as the uninterrupted ask loop would have, and a new one is asked.
        """
        pending = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.user_attrs.get("iteration") == iteration]
        if not pending:
            return None
        trial = pending[-1]
        problem = config_problem(config, trial.params)
        if not problem:
            return trial
        study._storage.set_trial_user_attr(trial._trial_id, "invalid", problem)
        study.tell(trial.number, state=TrialState.FAIL)
        return None

    def _ask_valid(self, iteration: int, config: dict[str, Any]) -> FrozenTrial:
        for _ in range(MAX_INVALID_ASKS):
            number = tagged_before(self.study(), None)
            study = self.study(sampler_seed(self.base_seed, number))
            trial = study.ask(self.distributions)
            trial.set_user_attr("iteration", iteration)
            problem = config_problem(config, trial.params)
            if not problem:
                return study.get_trials(deepcopy=False)[trial.number]
            trial.set_user_attr("invalid", problem)
            study.tell(trial, state=TrialState.FAIL)
        raise ConfigError(f"{MAX_INVALID_ASKS} sampled configs in a row broke a config rule; "
                          "check the search space of the workspace's preset")

    def reject_current(self, why: str) -> None:
        """Tell the current proposal FAIL (its edit was refused); the next ask is new."""
        if self.current is None:
            return
        study = self.study()
        trial = study.get_trials(deepcopy=False)[self.current.trial_number]
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, "invalid", why[:500])
            study.tell(trial.number, state=TrialState.FAIL)
        self.current = None


def starting_params(space: SearchSpace, dists: dict[str, BaseDistribution],
                    config: dict[str, Any]) -> dict[str, Any]:
    """The config's values of the searched keys, those inside the space (normalised).

    A key missing from the config, or whose value the space refuses, is left out (the
    sampler picks it).
    """
    flat = flatten(config)
    params: dict[str, Any] = {}
    for key, dist in dists.items():
        if key not in flat:
            continue
        try:
            value = space.validate(key, flat[key])
            inside = dist._contains(dist.to_internal_repr(value))
        except (ConfigError, ValueError, TypeError):
            continue
        if inside:
            params[key] = value
    return params


def _as_trained(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the schema's conversions applied, as the trainer reads it (a hand
    edit's ``32.0`` for an integer width is 32): the baseline's values are those it trains."""
    try:
        return validate_config(config, source="config").to_dict()
    except ConfigError:
        return config


def tagged_before(study: optuna.Study, number: int | None) -> int:
    """How many trials numbered below ``number`` (all when None) carry an iteration.

    Untagged trials (a kill between ``study.ask`` and the tagging) are not counted, so
    they shift no sampler seed.
    """
    return sum("iteration" in t.user_attrs for t in study.get_trials(deepcopy=False)
               if number is None or t.number < number)


def config_problem(config: dict[str, Any], params: dict[str, Any]) -> str:
    """Why the config with ``params`` applied is invalid ("" when valid)."""
    try:
        validate_config(apply_params(config, params), source="sampled config")
    except ConfigError as exc:
        return str(exc)
    return ""


def run_value(run: RunRecord) -> tuple[float | None, TrialState]:
    """What to tell the study about a committed run."""
    if run.status is RunStatus.PRUNED:
        return None, TrialState.PRUNED
    value = run.mean_val_mse if run.mean_val_mse is not None else run.val_mse
    if run.status is not RunStatus.OK or value is None or not math.isfinite(value):
        return None, TrialState.FAIL
    return value, TrialState.COMPLETE
