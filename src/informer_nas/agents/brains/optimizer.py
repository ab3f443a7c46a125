"""Builds a planner around an Optuna study: the shared part of the tpe and random brains."""

from __future__ import annotations

from agents.models.interface import Model

from informer_nas.agents.brains.optimizer_model import OptimizerModel
from informer_nas.agents.brains.study import StudyBrain
from informer_nas.agents.brains.study_sampler import SamplerName
from informer_nas.agents.planner import AgentPlanner
from informer_nas.agents.provider import Binding, recording_provider
from informer_nas.nas_system.brain import Budget
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.search_space import SearchSpace
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.workspace import Workspace


def study_brain(sampler: SamplerName, workspace: Workspace, settings: SessionSettings,
                space: SearchSpace) -> StudyBrain:
    """The workspace's study with ``sampler``, over its (fixed, never widened) space."""
    return StudyBrain(workspace.paths, sampler, settings.seed, space)


def optimizer_planner(sampler: SamplerName, workspace: Workspace, settings: SessionSettings,
                      space: SearchSpace, binding: Binding, model: Model | None = None
                      ) -> AgentPlanner:
    """An ``AgentPlanner`` whose planner model is an ``OptimizerModel`` over the study.

    Args:
        model: replaces the optimizer's model (a replay); the study is still synced.
    """
    brain = study_brain(sampler, workspace, settings, space)
    model = model or OptimizerModel(brain, binding, sampler)

    def before(ctx: ToolContext, budget: Budget) -> None:
        brain.sync(ctx.state)

    def after(ctx: ToolContext, record: RunRecord | None) -> None:
        brain.sync(ctx.state)

    provider = recording_provider({"planner": model}, binding)
    return AgentPlanner(sampler, provider, binding, before=before, after=after)
