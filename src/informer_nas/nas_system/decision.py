"""The verdict on one candidate: rule gate, confirmation seeds, evaluator, then commit.

``decide`` runs the rule gate against the incumbent (``gate.py``), trains confirmation
seeds for an accept or a borderline (the ``SeedConfirmer`` the session received), and asks
the evaluator about a borderline only, whose verdict cannot override a decisive rule.
``commit`` records the decision: on accept ``config.py`` becomes the run's
``config_used.py`` first, then one state save commits verdict, incumbent, iteration counter
and clears the scratch (the commit point); last ``candidate.py`` is removed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from informer_nas.errors import ConfigError
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.brain import Evaluator
from informer_nas.nas_system.checkpoints import remove_checkpoints
from informer_nas.nas_system.context import ToolContext, find_run
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    GateVerdict,
    IncumbentEvidence,
    evaluate_gate,
)
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.recovery import remove_candidate
from informer_nas.nas_system.state import doctor_hint

logger = logging.getLogger(__name__)

# (ctx, run_id, K): make sure run_id has results for the session's K confirmation seeds.
SeedConfirmer = Callable[[ToolContext, str, int], object]


@dataclass(frozen=True)
class Decision:
    """The final verdict on a candidate."""

    verdict: Literal["accept", "reject", "borderline"]
    accepted: bool
    decided_by: Literal["rules", "evaluator", "policy"]
    reason: str


def read_history(ctx: ToolContext, record: RunRecord) -> list[dict[str, Any]]:
    """The epochs of a run's ``history.json`` ([] when missing or unreadable)."""
    path = ctx.workspace.paths.run_dir(record.run_id) / "history.json"
    try:
        epochs = json.loads(path.read_text(encoding="utf-8")).get("epochs", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [epoch for epoch in epochs if isinstance(epoch, dict)]


def gate(ctx: ToolContext, record: RunRecord) -> GateVerdict:
    """The rule gate's verdict on ``record`` against the current incumbent."""
    incumbent = find_run(ctx, ctx.state.incumbent_run_id)
    evidence = CandidateEvidence.from_record(record, read_history(ctx, record))
    base = IncumbentEvidence.from_record(incumbent) if incumbent is not None else None
    return evaluate_gate(evidence, base, ctx.settings.thresholds)


def decide(ctx: ToolContext, record: RunRecord, evaluator: Evaluator,
           confirm: SeedConfirmer | None = None) -> Decision:
    """Gate, confirmation seeds for accept/borderline, then the evaluator for a borderline.

    Args:
        confirm: trains the missing confirmation seeds; required when the settings ask
            for confirmation seeds (a silent single-seed decision would be mostly noise).
    """
    verdict = gate(ctx, record)
    incumbent = find_run(ctx, ctx.state.incumbent_run_id)
    seeds = ctx.settings.confirm_seeds
    if seeds > 0 and confirm is None:
        raise ConfigError(f"confirm_seeds is {seeds} but no confirm function was given; "
                          "pass confirm=ensure_seeds (tools.launch_training)")
    if confirm is not None and seeds > 0 and incumbent is not None and verdict.verdict != "reject":
        confirm(ctx, record.run_id, seeds)
        confirm(ctx, incumbent.run_id, seeds)
        verdict = gate(ctx, find_run(ctx, record.run_id) or record)
    reason = "; ".join(verdict.reasons)
    if verdict.is_decisive:
        return Decision(verdict.verdict, verdict.verdict == "accept", "rules", reason)
    judged = evaluator.judge(ctx, record.run_id, verdict)
    text = f"{reason}; {judged.decided_by}: {judged.reason}"
    if judged.feedback:
        text += f" (feedback: {judged.feedback})"
    return Decision("borderline", judged.accept, judged.decided_by, text)


def commit(ctx: ToolContext, record: RunRecord, decision: Decision) -> None:
    """Record the decision: config.py first (on accept), then one state save (the commit)."""
    paths = ctx.workspace.paths
    if decision.accepted:
        atomic_write_text(paths.config, accepted_config_text(ctx, record))
        ctx.state.incumbent_run_id = record.run_id
    record.verdict = decision.verdict
    record.accepted = decision.accepted
    record.decided_by = decision.decided_by
    record.verdict_reason = decision.reason
    ctx.state.iteration += 1
    ctx.state.current = None
    ctx.save()
    remove_candidate(ctx)
    logger.info("%s: %s (%s, by %s)", record.run_id, "accepted" if decision.accepted
                else "rejected", decision.verdict, decision.decided_by)
    if ctx.settings.keep_checkpoints == "incumbent":  # after the commit: it names the keeper
        remove_checkpoints(paths, ctx.state)


def accepted_config_text(ctx: ToolContext, record: RunRecord) -> str:
    """The config an accepted run trained: its ``config_used.py`` (else candidate.py)."""
    paths = ctx.workspace.paths
    for path in (paths.run_dir(record.run_id) / "config_used.py", paths.candidate):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ConfigError(f"{record.run_id} was accepted but neither its config_used.py nor "
                      f"{paths.candidate} exists; {doctor_hint(paths)}")
