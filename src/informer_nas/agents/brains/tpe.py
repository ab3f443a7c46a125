"""The ``tpe`` brain: Optuna's TPE sampler behind the planner's tool protocol (the default
when no LLM is configured). See ``study.py`` for ask/tell, reseeding and crash repair."""

from __future__ import annotations

from agents.models.interface import Model

from informer_nas.agents.brains.optimizer import optimizer_planner
from informer_nas.agents.planner import AgentPlanner
from informer_nas.agents.provider import Binding
from informer_nas.nas_system.search_space import SearchSpace
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.workspace import Workspace


def tpe_planner(workspace: Workspace, settings: SessionSettings, space: SearchSpace,
                binding: Binding, model: Model | None = None) -> AgentPlanner:
    """A planner whose model samples with ``TPESampler`` seeded per trial from ``settings.seed``."""
    return optimizer_planner("tpe", workspace, settings, space, binding, model)
