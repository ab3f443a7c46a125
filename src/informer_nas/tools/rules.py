"""The rule tools: one gate rule applied to one recorded run, as JSON.

They read the run's record and ``history.json`` and the incumbent's record, and call the
pure rules of ``nas_system/gate.py``; they change nothing. The combined verdict (the one
that counts) is computed by the session loop with ``evaluate_gate``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from informer_nas.errors import NasError
from informer_nas.nas_system import gate
from informer_nas.nas_system.gate import CandidateEvidence, IncumbentEvidence, RuleResult
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.runs import find_run, incumbent
from informer_nas.tools.summarize_curve import load_history

if TYPE_CHECKING:
    from informer_nas.tools.context import ToolContext


def _finished_run(ctx: ToolContext, run_id: str) -> RunRecord:
    record = find_run(ctx.state, run_id)
    if record.status is RunStatus.RUNNING:
        raise NasError(f"{run_id} is still running; check it after it finishes")
    return record


def _evidence(ctx: ToolContext, record: RunRecord) -> CandidateEvidence:
    return CandidateEvidence.from_record(record, load_history(ctx, record.run_id) or [])


def _incumbent_evidence(ctx: ToolContext, run_id: str) -> IncumbentEvidence | None:
    record = incumbent(ctx.state)
    if record is None or record.run_id == run_id or record.val_mse is None:
        return None
    return IncumbentEvidence.from_record(record)


def _report(run_id: str, result: RuleResult) -> str:
    return json.dumps({
        "run_id": run_id, "rule": result.rule, "outcome": result.outcome,
        "reason": result.reason, "relative_change": result.relative_change,
        "compared_seeds": list(result.compared_seeds),
    })


def check_failure(ctx: ToolContext, run_id: str) -> str:
    """Check whether a run failed (crashed, diverged, out of memory, timed out, interrupted,
    pruned, or no finite val MSE): outcome "reject" if so, else "pass".

    Args:
        run_id: the run to check, e.g. "run_0003".
    """
    record = _finished_run(ctx, run_id)
    return _report(run_id, gate.check_failure(_evidence(ctx, record)))


def check_improvement(ctx: ToolContext, run_id: str) -> str:
    """Compare a run's val MSE with the incumbent's (means over shared confirmation seeds
    when recorded): "accept" beyond the accept threshold, "reject" beyond the reject
    threshold, else "borderline". With no incumbent yet, a run is the baseline ("accept").

    Args:
        run_id: the run to check, e.g. "run_0003".
    """
    record = _finished_run(ctx, run_id)
    evidence = _evidence(ctx, record)
    failure = gate.check_failure(evidence)
    if failure.outcome == "reject":
        return _report(run_id, RuleResult("improvement", "reject", failure.reason))
    base = _incumbent_evidence(ctx, run_id)
    if base is None and ctx.state.incumbent_run_id == run_id:
        return _report(run_id, RuleResult("improvement", "pass", f"{run_id} is the incumbent"))
    return _report(run_id, gate.check_improvement(evidence, base, ctx.settings.thresholds))


def check_overfitting(ctx: ToolContext, run_id: str) -> str:
    """Check whether a run ends overfitting: val loss rising for several epochs while the
    train loss falls, with the train/val gap widening beyond a threshold ("reject"), else
    "pass".

    Args:
        run_id: the run to check, e.g. "run_0003".
    """
    record = _finished_run(ctx, run_id)
    history = load_history(ctx, record.run_id) or []
    return _report(run_id, gate.check_overfitting(history, ctx.settings.thresholds))
