"""What the session loop asks of a brain: the ``Planner`` and ``Evaluator`` protocols.

The planner and the evaluator reach the session as objects implementing these two small
protocols (as an Optuna study receives a sampler), so ``nas_system`` never imports the
Agents SDK; ``agents/`` implements them. Their results are plain frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from informer_nas.errors import NasError
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.gate import GateVerdict
from informer_nas.nas_system.records import RunRecord, StepType


class BrainUnavailable(NasError):
    """The planner's model could not be reached (after its retries); the session stops."""


@dataclass(frozen=True)
class Budget:
    """The budget as the planner sees it: iteration (1-based) of max_iterations."""

    iteration: int
    max_iterations: int

    @property
    def remaining(self) -> int:
        """Iterations left, this one included."""
        return self.max_iterations - self.iteration + 1


@dataclass(frozen=True)
class PlannerOutcome:
    """The planner's decision for one iteration, or why planning failed."""

    step_type: StepType | None
    plan: str = ""
    reason: str = ""
    failure: str | None = None  # a planning failure: turn limit, unusable model output

    @classmethod
    def failed(cls, why: str) -> PlannerOutcome:
        """An outcome for a planning failure (no decision)."""
        return cls(step_type=None, failure=why)


@dataclass(frozen=True)
class EvaluatorOutcome:
    """The evaluator's judgement of a borderline candidate."""

    accept: bool
    reason: str
    feedback: str = ""
    decided_by: Literal["evaluator", "policy"] = "evaluator"


class Planner(Protocol):
    """A brain that drives one iteration through the tools in ``ctx``."""

    name: str

    def plan_iteration(self, ctx: ToolContext, budget: Budget) -> PlannerOutcome:
        """Plan (and usually launch) one candidate; return the decision or a failure."""
        ...

    def finish_iteration(self, ctx: ToolContext, record: RunRecord | None) -> None:
        """Called after an iteration was committed (``record`` None: no run was made)."""
        ...


class Evaluator(Protocol):
    """Judges a candidate the gate left borderline (never a decisive one)."""

    def judge(self, ctx: ToolContext, run_id: str, verdict: GateVerdict) -> EvaluatorOutcome:
        """Accept or reject ``run_id``."""
        ...
