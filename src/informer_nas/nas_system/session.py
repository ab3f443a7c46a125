"""The session loop: plan -> launch -> gate -> evaluate -> record, in the style of ask/tell.

The planner and the evaluator arrive as objects implementing the two small protocols of
``brain.py`` (as an Optuna study receives a sampler), so this module never imports the
Agents SDK, nor the tools: the seed-confirmation function arrives through ``run_session``
too (``confirm``; the API passes ``tools.launch_training.ensure_seeds``). The planner drives
the tools through the ``ToolContext`` (one training per iteration, enforced by
``launch_training``); the rest is code (``decision.py``): gate, confirmation seeds, the
evaluator for a borderline only, and the state update. The session's own token usage is kept in its
``SessionInfo`` entry (the total per role stays in ``state.usage``).

Crash safety (``kill -9`` at any instant) rests on the order of writes: the run record is
saved ``running`` before training; the planner's decision is saved into it before the
gate; on accept ``config.py`` becomes the run's ``config_used.py``; then one state save
commits verdict, incumbent, iteration counter and clears the scratch (the commit point);
last ``candidate.py`` is removed. ``recovery.repair_workspace`` fixes whatever a crash
left between these steps, at the start of the next session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from informer_nas.errors import ConfigError, interruption_reason
from informer_nas.informer.config import load_config
from informer_nas.nas_system.brain import (
    BrainUnavailable,
    Budget,
    Evaluator,
    Planner,
    PlannerOutcome,
)
from informer_nas.nas_system.checkpoints import remove_checkpoints
from informer_nas.nas_system.context import ToolContext, find_run
from informer_nas.nas_system.decision import SeedConfirmer, commit, decide
from informer_nas.nas_system.executor import TrainingExecutor
from informer_nas.nas_system.records import RoleUsage, RunRecord, RunStatus
from informer_nas.nas_system.recovery import discard_scratch, remove_candidate, repair_workspace
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import (
    IterationScratch,
    SessionInfo,
    load_state,
    workspace_lock,
)
from informer_nas.nas_system.task import check_data, check_task
from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger(__name__)

SessionObserver = Callable[[dict[str, Any]], None]
# A planner that ends this many iterations in a row without a candidate (a model that never
# launches, or keeps failing to answer) stops the session instead of spending the budget.
MAX_FAILURES_IN_A_ROW = 3
# A config that passed edit_config's checks and is still refused by the trainer points at
# the data or the installation, not at the candidate: three in a row stop the session too,
# so that a broken environment does not spend the budget. (Crashes are not counted: a
# trainer killed from outside, by the OOM killer say, is the candidate's or a passing
# event, and the planner learns from it.)
BROKEN_STATUSES = frozenset({RunStatus.INVALID_CONFIG})
StopReason = Literal["budget", "planner", "interrupted", "brain_unavailable",
                     "trainings_failing", "no_candidates"]


@dataclass(frozen=True)
class SessionResult:
    """How a session ended."""

    stopped_by: StopReason
    iterations_run: int
    iteration: int
    max_iterations: int
    incumbent_run_id: str | None
    message: str = ""  # why it stopped; for a budget stop, the last iteration's failure
    # iterations that trained nothing judgeable: no candidate, or the trainer refused it
    # (BROKEN_STATUSES); when they are all of a session's iterations, nothing was searched
    wasted_iterations: int = 0

    @property
    def searched_nothing(self) -> bool:
        """Every iteration of this session ended without a judgeable training."""
        return self.iterations_run > 0 and self.wasted_iterations == self.iterations_run




def usage_since(before: dict[str, RoleUsage], now: dict[str, RoleUsage]) -> dict[str, RoleUsage]:
    """Usage per role added since ``before`` (roles without any change left out)."""
    added: dict[str, RoleUsage] = {}
    for role, total in now.items():
        old = before.get(role, RoleUsage())
        delta = RoleUsage(requests=total.requests - old.requests,
                          input_tokens=total.input_tokens - old.input_tokens,
                          output_tokens=total.output_tokens - old.output_tokens,
                          cost_usd=round(total.cost_usd - old.cost_usd, 8))
        if delta != RoleUsage():
            added[role] = delta
    return added


@dataclass
class SessionContext(ToolContext):
    """The ``ToolContext`` of a session: every save also records the session's usage.

    Attributes:
        session: this session's entry in ``state.sessions`` (None: not recorded).
        usage_at_start: ``state.usage`` when the session started.
    """

    session: SessionInfo | None = None
    usage_at_start: dict[str, RoleUsage] = field(default_factory=dict)

    def save(self) -> None:
        """Update ``session.usage`` from ``state.usage``, then persist the state."""
        if self.session is not None:
            self.session.usage = usage_since(self.usage_at_start, self.state.usage)
        super().save()


@dataclass
class _Loop:
    ctx: ToolContext
    planner: Planner
    evaluator: Evaluator
    observer: SessionObserver
    confirm: SeedConfirmer | None = None
    iterations_run: int = 0
    announced: set[str] = field(default_factory=set)
    stop_message: str = ""  # the last failure: why the session stops, when it does
    stop_after: int | None = None  # a replay of an unfinished session ends there
    failures_in_a_row: int = 0  # iterations spent without a candidate, since the last one
    wasted_iterations: int = 0  # without a candidate, or with a run the trainer refused
    broken_in_a_row: int = 0  # runs in a row the trainer refused (BROKEN_STATUSES)

    def emit(self, event: str, **data: Any) -> None:
        try:
            self.observer({"event": event, **data})
        except Exception:  # a display bug must not stop a search
            logger.exception("session observer failed on %s", event)

    def on_progress(self, trainer_event: dict[str, Any]) -> None:
        current = self.ctx.state.current
        run_id = current.launched_run_id if current else None
        if run_id and run_id not in self.announced:
            self.announced.add(run_id)
            changes = [c.model_dump() for c in current.changes] if current else []
            self.emit("candidate", run_id=run_id, changes=changes,
                      rationale=current.rationale if current else "")
        self.emit("progress", run_id=run_id, trainer_event=trainer_event)

    def run(self, pending: RunRecord | None) -> SessionResult:
        state = self.ctx.state
        if pending is not None:
            # judging the pending run commits an iteration: a replay of a session stopped
            # before that verdict ends here too
            if self.stop_after is not None and state.iteration >= self.stop_after:
                return self.result("interrupted", "the recorded session stopped here")
            self.emit("resume_evaluation", run_id=pending.run_id)
            self.finish_run(pending, None)
        while state.iteration < state.max_iterations:
            if self.stop_after is not None and state.iteration >= self.stop_after:
                return self.result("interrupted", "the recorded session stopped here")
            stop = self.iteration()
            if stop is None and self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                stop = "no_candidates"
                self.stop_message = (f"{self.failures_in_a_row} iterations in a row ended "
                                     f"without a candidate; the last: {self.stop_message}")
            if stop is None and self.broken_in_a_row >= MAX_FAILURES_IN_A_ROW:
                stop = "trainings_failing"
                self.stop_message = (f"{self.broken_in_a_row} trainings in a row were refused by "
                                     f"the trainer; the last: {self.stop_message}")
            if stop is not None:
                return self.result(stop, self.stop_message)
        return self.result("budget", self.stop_message)

    def iteration(self) -> StopReason | None:
        state = self.ctx.state
        budget = Budget(state.iteration + 1, state.max_iterations)
        state.current = IterationScratch(iteration=budget.iteration)
        self.ctx.save()
        self.emit("iteration_start", iteration=budget.iteration,
                  max_iterations=budget.max_iterations)
        try:
            outcome = self.planner.plan_iteration(self.ctx, budget)
        except BrainUnavailable as exc:
            logger.error("planner unavailable: %s", exc)
            self.stop_message = str(exc)
            record = self.launched_record()
            if record is not None and record.status.is_finished:  # judged: a verdict follows
                self.finish_run(record, PlannerOutcome.failed(str(exc)))
            else:
                self.emit("planning_failure", iteration=budget.iteration, reason=str(exc),
                          committed=False)
                discard_scratch(self.ctx)
            return "brain_unavailable"
        self.emit("plan", iteration=budget.iteration, step_type=outcome.step_type,
                  plan=outcome.plan, reason=outcome.reason, failure=outcome.failure)
        return self.after_planning(outcome)

    def after_planning(self, outcome: PlannerOutcome) -> StopReason | None:
        record = self.launched_record()
        if record is not None and record.status.is_finished:
            self.finish_run(record, outcome)
        elif outcome.step_type == "stop" and outcome.failure is None:
            discard_scratch(self.ctx)
            return "planner"
        else:
            self.commit_without_run(outcome, record)
        return "planner" if outcome.step_type == "stop" else None

    def launched_record(self) -> RunRecord | None:
        current = self.ctx.state.current
        if current is None or current.launched_run_id is None:
            return None
        return find_run(self.ctx, current.launched_run_id)

    def commit_without_run(self, outcome: PlannerOutcome, record: RunRecord | None) -> None:
        """A planning failure (or a run that never finished): the iteration is spent."""
        why = outcome.failure or (f"run {record.run_id} {record.status.value}" if record
                                  else "the planner launched no training")
        logger.warning("iteration %d: no candidate to evaluate: %s", self.ctx.state.iteration + 1,
                       why)
        self.emit("planning_failure", iteration=self.ctx.state.iteration + 1, reason=why,
                  committed=True)
        state = self.ctx.state
        state.iteration += 1
        state.current = None
        self.ctx.save()
        remove_candidate(self.ctx)
        self.iterations_run += 1
        self.failures_in_a_row += 1
        self.wasted_iterations += 1
        self.stop_message = why
        self.planner.finish_iteration(self.ctx, None)

    def finish_run(self, record: RunRecord, outcome: PlannerOutcome | None) -> None:
        if outcome is not None:
            record.step_type = outcome.step_type
            record.plan = outcome.plan
            record.reason = outcome.reason or (outcome.failure or "")
            self.ctx.save()
        decision = decide(self.ctx, record, self.evaluator, self.confirm)
        # Confirmation seeds may have replaced the record object in the state.
        record = find_run(self.ctx, record.run_id) or record
        commit(self.ctx, record, decision)
        self.iterations_run += 1
        self.failures_in_a_row = 0
        if record.status in BROKEN_STATUSES:
            self.broken_in_a_row += 1
            self.wasted_iterations += 1
            self.stop_message = f"{record.run_id} {record.status.value}: {record.status_reason}"
        else:
            self.broken_in_a_row = 0
        incumbent = find_run(self.ctx, self.ctx.state.incumbent_run_id)
        self.emit("verdict", iteration=record.iteration, run_id=record.run_id,
                  verdict=decision.verdict, accepted=decision.accepted,
                  decided_by=decision.decided_by, reason=decision.reason,
                  val_mse=record.val_mse, mean_val_mse=record.mean_val_mse,
                  changes=[change.model_dump() for change in record.changes],
                  step_type=record.step_type,
                  incumbent_run_id=incumbent.run_id if incumbent else None,
                  incumbent_val_mse=incumbent.val_mse if incumbent else None)
        self.planner.finish_iteration(self.ctx, record)

    def result(self, stopped_by: StopReason, message: str = "") -> SessionResult:
        state = self.ctx.state
        return SessionResult(stopped_by, self.iterations_run, state.iteration,
                             state.max_iterations, state.incumbent_run_id, message,
                             self.wasted_iterations)


def check_budget(iters: int | None, done: int = 0) -> None:
    """Refuse a total budget below 1 or below the ``done`` iterations of the workspace.

    Raises:
        ConfigError: what to pass instead.
    """
    if iters is not None and iters < 1:
        raise ConfigError(f"iters must be >= 1, got {iters}; pass --iters 20")
    if iters is not None and iters < done:
        raise ConfigError(f"--iters {iters} is below the {done} iterations this workspace has "
                          f"done (--iters is the total budget); pass --iters {done + 10} to "
                          "run 10 more")


def run_session(
    workspace: Workspace,
    planner: Planner,
    evaluator: Evaluator,
    settings: SessionSettings,
    executor: TrainingExecutor,
    iters: int | None = None,
    observer: SessionObserver | None = None,
    session: SessionInfo | None = None,
    confirm: SeedConfirmer | None = None,
    stop_after: int | None = None,
) -> SessionResult:
    """Run iterations until the workspace's budget is spent, the planner stops, or Ctrl+C.

    Args:
        workspace: an opened workspace (its lock is held for the whole session).
        planner: the brain that proposes and launches candidates.
        evaluator: judges borderline candidates.
        settings: timeout, confirmation seeds, gate thresholds, seed, pruning, turn limit.
        executor: where trainings run.
        iters: the workspace's total iteration budget (None keeps the stored one).
        observer: receives events ``iteration_start``, ``candidate``, ``progress``,
            ``plan``, ``verdict``, ``planning_failure``, ``resume_evaluation``,
            ``session_end`` (dicts with an ``event`` key).
        session: this session's entry for ``state.sessions`` (id, trace file); its
            ``usage`` receives the session's token usage.
        confirm: trains confirmation seeds, ``(ctx, run_id, K)``; required when
            ``settings.confirm_seeds`` > 0 (``tools.launch_training.ensure_seeds``).
        stop_after: stop (as ``interrupted``) once this many iterations are committed, below
            the budget; a replay of a session that was stopped early uses it.

    Raises:
        ConfigError: ``iters`` below 1, or confirmation seeds without ``confirm``.
        WorkspaceLocked: another live process holds the workspace.
    """
    check_budget(iters)
    if settings.confirm_seeds > 0 and confirm is None:
        raise ConfigError(f"confirm_seeds is {settings.confirm_seeds} but run_session got no "
                          "confirm function; pass confirm=ensure_seeds "
                          "(tools/launch_training.py)")
    with workspace_lock(workspace.paths):
        config = load_config(workspace.paths.config)  # a bad hand edit stops here
        state = load_state(workspace.paths)
        check_task(workspace.paths, state, config)  # and so does a hand edit of the task
        if executor.reads_data:
            check_data(state, config)  # and data other than the incumbent's
        if iters is not None:
            state.max_iterations = iters
        state.planner = planner.name
        if session is not None:  # the caller may have recorded it already
            known = next((s for s in state.sessions if s.session_id == session.session_id), None)
            if known is None:
                state.sessions.append(session)
            else:
                session = known
        ctx = SessionContext(workspace, state, settings, executor, session=session,
                             usage_at_start={r: u.model_copy() for r, u in state.usage.items()})
        loop = _Loop(ctx, planner, evaluator, observer or (lambda event: None), confirm,
                     stop_after=stop_after)
        loop.ctx.on_progress = loop.on_progress
        pending = repair_workspace(loop.ctx)
        loop.ctx.save()
        if settings.keep_checkpoints == "incumbent":  # also those of earlier sessions
            remove_checkpoints(workspace.paths, state)
        try:
            result = loop.run(pending)
        except KeyboardInterrupt as stop:  # Ctrl+C, or a StopSignal (SIGTERM, SIGHUP)
            why = interruption_reason(stop)
            logger.warning("%s: state saved; continue with `nas resume`", why)
            repair_workspace(loop.ctx)
            result = loop.result("interrupted", why)
        loop.emit("session_end", stopped_by=result.stopped_by, iteration=result.iteration,
                  max_iterations=result.max_iterations, incumbent_run_id=result.incumbent_run_id,
                  message=result.message,
                  config=workspace.paths.config.read_text(encoding="utf-8"))
        return result
