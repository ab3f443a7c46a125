"""``ToolContext``: what every tool receives as its first argument (never globals).

It lives in ``nas_system`` (not ``tools``) so that the session loop can build one without
importing the tools layer; ``tools/context.py`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from informer_nas.nas_system.executor import TrainingExecutor
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import AgentState, save_state
from informer_nas.nas_system.workspace import Workspace


@dataclass
class ToolContext:
    """The live session seen by the tools.

    Attributes:
        workspace: the opened workspace (``workspace.paths``).
        state: the live state; a tool that changes it calls ``save()``.
        settings: timeout, confirmation seeds, gate thresholds, base seed, pruning.
        executor: runs trainings (a local subprocess today).
        on_progress: receives the trainer's JSON-lines events (the progress bar).
    """

    workspace: Workspace
    state: AgentState
    settings: SessionSettings
    executor: TrainingExecutor
    on_progress: Callable[[dict[str, Any]], None] | None = None

    def save(self) -> None:
        """Persist ``state`` atomically (see ``nas_system/state.py``)."""
        save_state(self.workspace.paths, self.state)


def find_run(ctx: ToolContext, run_id: str | None) -> RunRecord | None:
    """The run record with this id in ``ctx.state``, or None (also for a None id)."""
    if run_id is None:
        return None
    return next((run for run in ctx.state.runs if run.run_id == run_id), None)
