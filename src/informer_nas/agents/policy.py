"""The offline evaluator: a deterministic, noise-aware policy for borderline candidates.

It is ``gate.guarded_policy_decision`` (no model): a borderline candidate is accepted only
if its mean val MSE over the confirmation seeds it shares with the incumbent beats the
incumbent's mean over the same seeds, and, with two or more shared seeds, the paired
per-seed improvement has a t-statistic of at least ``thresholds.noise_t``. With a single
seed each, the runs' own val MSEs are compared.
"""

from __future__ import annotations

from informer_nas.nas_system.brain import EvaluatorOutcome
from informer_nas.nas_system.context import ToolContext, find_run
from informer_nas.nas_system.decision import read_history
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    GateVerdict,
    IncumbentEvidence,
    guarded_policy_decision,
)


class PolicyEvaluator:
    """``Evaluator`` for offline brains (tpe, random, replay without an LLM)."""

    name = "policy"

    def judge(self, ctx: ToolContext, run_id: str, verdict: GateVerdict) -> EvaluatorOutcome:
        return policy_outcome(ctx, run_id)


def policy_outcome(ctx: ToolContext, run_id: str, prefix: str = "") -> EvaluatorOutcome:
    """The policy's decision on ``run_id`` against the current incumbent."""
    record = find_run(ctx, run_id)
    incumbent = find_run(ctx, ctx.state.incumbent_run_id)
    if (record is None or incumbent is None or record.val_mse is None
            or incumbent.val_mse is None):
        return EvaluatorOutcome(False, prefix + "nothing to compare: rejected",
                                decided_by="policy")
    accept, reason = guarded_policy_decision(
        CandidateEvidence.from_record(record, read_history(ctx, record)),
        IncumbentEvidence.from_record(incumbent), ctx.settings.thresholds,
    )
    return EvaluatorOutcome(accept, f"{prefix}{reason} (incumbent {incumbent.run_id})",
                            decided_by="policy")
