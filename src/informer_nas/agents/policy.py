"""The offline evaluator: a deterministic policy for borderline candidates (no model).

Accept a borderline candidate only if its mean val MSE over the confirmation seeds (the
seeds it shares with the incumbent) beats the incumbent's mean over the same seeds; with
a single seed each, the runs' own val MSEs are compared.
"""

from __future__ import annotations

from informer_nas.nas_system.brain import EvaluatorOutcome
from informer_nas.nas_system.context import ToolContext, find_run
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    GateVerdict,
    IncumbentEvidence,
    compared_values,
    policy_decision,
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
    if record is None or incumbent is None or record.val_mse is None:
        return EvaluatorOutcome(False, prefix + "nothing to compare: rejected",
                                decided_by="policy")
    candidate, base, seeds = compared_values(
        CandidateEvidence.from_record(record), IncumbentEvidence.from_record(incumbent)
    )
    accept = policy_decision(candidate, base)
    over = f"mean over seeds {list(seeds)}" if seeds else "single seed"
    word = "beats" if accept else "does not beat"
    reason = f"{candidate:.6g} {word} incumbent {incumbent.run_id} {base:.6g} ({over})"
    return EvaluatorOutcome(accept, prefix + reason, decided_by="policy")
