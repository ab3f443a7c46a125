"""Builds a brain's planner and evaluator by name; the registry of brains.

A new brain is one builder function plus one line in ``BUILDERS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from informer_nas.agents.policy import PolicyEvaluator
from informer_nas.agents.provider import Binding
from informer_nas.errors import ConfigError
from informer_nas.nas_system.brain import (
    BrainUnavailable,
    Budget,
    Evaluator,
    Planner,
    PlannerOutcome,
)
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.recovery import remove_candidate
from informer_nas.nas_system.search_space import SearchSpace
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import IterationScratch
from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger(__name__)

BRAINS: tuple[str, ...] = ("tpe", "random", "llm", "hybrid")


@dataclass(frozen=True)
class BrainSpec:
    """What a brain builder needs."""

    workspace: Workspace
    settings: SessionSettings
    search_space: SearchSpace  # the study's space: the state's preset and narrowing
    binding: Binding
    tracing: bool = False
    models: Mapping[str, Any] = field(default_factory=dict)  # role -> Model (replay)


def _tpe(spec: BrainSpec) -> tuple[Planner, Evaluator]:
    from informer_nas.agents.brains.tpe import tpe_planner

    planner = tpe_planner(spec.workspace, spec.settings, spec.search_space, spec.binding,
                          spec.models.get("planner"))
    return planner, PolicyEvaluator()


def _random(spec: BrainSpec) -> tuple[Planner, Evaluator]:
    from informer_nas.agents.brains.random_search import random_planner

    planner = random_planner(spec.workspace, spec.settings, spec.search_space, spec.binding,
                             spec.models.get("planner"))
    return planner, PolicyEvaluator()


def _llm(spec: BrainSpec) -> tuple[Planner, Evaluator]:
    from informer_nas.agents.brains.llm import llm_brain

    return llm_brain(spec)


def _hybrid(spec: BrainSpec) -> tuple[Planner, Evaluator]:
    from informer_nas.agents.brains.hybrid import hybrid_brain

    return hybrid_brain(spec)


BUILDERS: dict[str, Callable[[BrainSpec], tuple[Planner, Evaluator]]] = {
    "tpe": _tpe, "random": _random, "llm": _llm, "hybrid": _hybrid,
}


def check_brain_names(name: str | None, fallback: str | None) -> None:
    """Refuse an unknown planner or fallback name (None: not given).

    Raises:
        ConfigError: the name and the choices.
    """
    for value, option in ((name, "--planner"), (fallback, "--fallback")):
        if value is not None and value not in BUILDERS:
            raise ConfigError(f"unknown brain {value!r} for {option}; choose one of "
                              f"{', '.join(BRAINS)}")


def build_brain(name: str, spec: BrainSpec,
                fallback: str | None = None) -> tuple[Planner, Evaluator]:
    """The planner and evaluator of brain ``name`` (with a fallback planner if asked).

    Raises:
        ConfigError: unknown brain or fallback name.
    """
    check_brain_names(name, fallback)
    planner, evaluator = BUILDERS[name](spec)
    if fallback is not None and fallback != name:
        backup, _ = BUILDERS[fallback](spec)
        planner = FallbackPlanner(planner, backup)
    return planner, evaluator


SWITCH_AFTER_FAILURES = 2  # before the session's own stop (MAX_FAILURES_IN_A_ROW)


class FallbackPlanner:
    """Uses ``primary`` until its model is unreachable, or until it ends
    ``SWITCH_AFTER_FAILURES`` iterations in a row without a candidate (a model that never
    launches a training); then ``backup`` for good, starting with the iteration at hand."""

    def __init__(self, primary: Planner, backup: Planner) -> None:
        self.primary = primary
        self.backup = backup
        self.active = primary
        self.name = primary.name
        self.failures_in_a_row = 0

    def plan_iteration(self, ctx: ToolContext, budget: Budget) -> PlannerOutcome:
        if self.active is self.backup:
            return self.backup.plan_iteration(ctx, budget)
        try:
            outcome = self.primary.plan_iteration(ctx, budget)
        except BrainUnavailable as exc:
            return self._switch(ctx, budget, str(exc))
        current = ctx.state.current
        launched = current is not None and current.launched_run_id is not None
        if launched or (outcome.step_type == "stop" and outcome.failure is None):
            self.failures_in_a_row = 0
            return outcome
        self.failures_in_a_row += 1
        if self.failures_in_a_row < SWITCH_AFTER_FAILURES:
            return outcome
        why = outcome.failure or "the planner launched no training"
        return self._switch(ctx, budget, f"{self.failures_in_a_row} iterations in a row without "
                                         f"a candidate (the last: {why})")

    def _switch(self, ctx: ToolContext, budget: Budget, why: str) -> PlannerOutcome:
        logger.warning("%s; continuing on the %s brain", why, self.backup.name)
        self.active = self.backup
        current = ctx.state.current
        if current is not None and current.launched_run_id is not None:
            return PlannerOutcome.failed(f"planning failure: {why}")
        ctx.state.current = IterationScratch(iteration=budget.iteration)
        ctx.save()
        remove_candidate(ctx)
        return self.backup.plan_iteration(ctx, budget)

    def finish_iteration(self, ctx: ToolContext, record: RunRecord | None) -> None:
        self.primary.finish_iteration(ctx, record)
        if self.backup is not self.primary:
            self.backup.finish_iteration(ctx, record)
