"""The ``random`` brain: uniform random sampling behind the planner's tool protocol, the
baseline every other brain must beat. See ``study.py`` for ask/tell and reseeding."""

from __future__ import annotations

from agents.models.interface import Model

from informer_nas.agents.brains.optimizer import optimizer_planner
from informer_nas.agents.planner import AgentPlanner
from informer_nas.agents.provider import Binding
from informer_nas.nas_system.search_space import SearchSpace
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.workspace import Workspace


def random_planner(workspace: Workspace, settings: SessionSettings, space: SearchSpace,
                binding: Binding, model: Model | None = None) -> AgentPlanner:
    """A planner whose model samples with ``RandomSampler``, seeded per trial from the base
    seed."""
    return optimizer_planner("random", workspace, settings, space, binding, model)
