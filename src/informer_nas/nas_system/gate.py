"""The rule gate: a pure function from a candidate's evidence to accept / reject / borderline.

Rules are small ``GateRule`` subclasses listed in ``RULES``; each looks at numbers only
(run status, validation MSE per seed, the epoch history) and returns a ``RuleResult``.
``evaluate_gate`` combines them: any decisive reject wins, then a borderline, then an
accept. Decisive verdicts (accept, reject) are final; only a borderline goes to the
evaluator, whose offline stand-in is ``policy_decision``.

Definitions (all thresholds are in ``GateThresholds``):

- relative change = (candidate - incumbent) / incumbent on validation MSE; negative is
  better. Accept when it is below ``-accept_improvement`` (strictly), reject when it is
  above ``reject_degradation`` (strictly), borderline in between (boundaries included, up
  to float rounding).
- With confirmation seeds both sides are compared on their mean over the seeds they share,
  and an accept also needs the paired per-seed improvements to stand ``noise_t`` standard
  errors clear of zero; otherwise it is downgraded to borderline ("within seed noise").
- Overfitting: the last ``overfit_epochs`` epoch-to-epoch steps all raise the val loss
  and lower the train loss, and over that trailing streak the relative generalization gap
  ``(val_loss - train_loss) / train_loss`` widens by more than ``overfit_gap``. Measuring
  the widening (not the gap itself) matters on ETT, whose val loss sits well above the
  train loss even in healthy runs.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from informer_nas.errors import ConfigError
from informer_nas.nas_system.records import RunRecord, RunStatus, VerdictKind

RuleOutcome = Literal["accept", "reject", "borderline", "pass"]
# Comparisons at a threshold tolerate float rounding: 0.98 vs 1.0 is exactly -2 %.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GateThresholds:
    """Gate thresholds; see the module docstring for the exact definitions.

    Args:
        accept_improvement: relative val-MSE improvement needed to accept (0.02 = 2 %).
        reject_degradation: relative val-MSE degradation that rejects (0.005 = 0.5 %).
        overfit_epochs: consecutive epochs of rising val loss with falling train loss.
        overfit_gap: widening of the relative train/val gap over that streak.
        noise_t: paired t-statistic an accept needs when >= 2 shared seeds are compared
            (3.0: about a one-sided 95 % test with 3 shared seeds, Student t with 2 df).
    """

    accept_improvement: float = 0.02
    reject_degradation: float = 0.005
    overfit_epochs: int = 3
    overfit_gap: float = 0.1
    noise_t: float = 3.0

    def __post_init__(self) -> None:
        for name in ("accept_improvement", "reject_degradation", "overfit_gap", "noise_t"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"gate threshold {name} must be a number >= 0, got {value!r}")
        if self.overfit_epochs < 1:
            raise ConfigError(
                f"gate threshold overfit_epochs must be >= 1, got {self.overfit_epochs}; e.g. 3"
            )


@dataclass(frozen=True)
class CandidateEvidence:
    """What the gate knows about a candidate run.

    Args:
        status: the run status (anything but ok is a failure, pruned included).
        val_mse: validation MSE of the main seed (None when not reached).
        seed_val_mse: validation MSE per successful seed (main and confirmation seeds).
        failed_seeds: confirmation seeds whose run did not finish ok.
        history: the epochs of ``history.json`` (``train_loss`` and ``val_loss`` used).
        reason: the run's status reason, quoted in a failure verdict.
    """

    status: RunStatus
    val_mse: float | None
    seed_val_mse: Mapping[int, float] = field(default_factory=dict)
    failed_seeds: tuple[int, ...] = ()
    history: Sequence[Mapping[str, Any]] = ()
    reason: str = ""

    @classmethod
    def from_record(
        cls, record: RunRecord, history: Sequence[Mapping[str, Any]] = ()
    ) -> CandidateEvidence:
        """Build the evidence of a recorded run (its seeds included)."""
        seeds, failed = _seed_values(record)
        return cls(record.status, record.val_mse, seeds, failed, tuple(history),
                   record.status_reason)


@dataclass(frozen=True)
class IncumbentEvidence:
    """The incumbent's validation MSE, overall and per successful seed."""

    run_id: str
    val_mse: float
    seed_val_mse: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: RunRecord) -> IncumbentEvidence:
        """Build the evidence of the incumbent run; it must have a val MSE."""
        if record.val_mse is None:
            raise ConfigError(f"incumbent {record.run_id} has no val_mse; it cannot be compared")
        return cls(record.run_id, record.val_mse, _seed_values(record)[0])


def _seed_values(record: RunRecord) -> tuple[dict[int, float], tuple[int, ...]]:
    return seed_values(record.status, record.seed, record.val_mse,
                       [(s.seed, s.status, s.val_mse) for s in record.seeds])


def seed_values(status: RunStatus, seed: int, val_mse: float | None,
                seeds: Iterable[tuple[int, RunStatus, float | None]],
                ) -> tuple[dict[int, float], tuple[int, ...]]:
    """The val MSE per successful seed (the main seed and the confirmation seeds), and the
    confirmation seeds that failed."""
    values: dict[int, float] = {}
    if status is RunStatus.OK and val_mse is not None:
        values[seed] = val_mse
    failed: list[int] = []
    for number, seed_status, value in seeds:
        if seed_status is RunStatus.OK and value is not None:
            values[number] = value
        else:
            failed.append(number)
    return values, tuple(failed)


@dataclass(frozen=True)
class RuleResult:
    """One rule's finding: ``pass`` means the rule has nothing to say."""

    rule: str
    outcome: RuleOutcome
    reason: str
    relative_change: float | None = None
    compared_seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class GateVerdict:
    """The combined verdict, with the reasons of the rules that produced it."""

    verdict: VerdictKind
    reasons: tuple[str, ...]
    relative_change: float | None = None
    compared_seeds: tuple[int, ...] = ()
    results: tuple[RuleResult, ...] = ()

    @property
    def is_decisive(self) -> bool:
        """Accept and reject are final; only a borderline goes to the evaluator."""
        return self.verdict != "borderline"


def check_failure(evidence: CandidateEvidence) -> RuleResult:
    """Reject a run that did not finish ok (pruned included) or has no finite val MSE."""
    if evidence.status is not RunStatus.OK:
        detail = f": {evidence.reason}" if evidence.reason else ""
        return RuleResult("failure", "reject", f"run {evidence.status.value}{detail}")
    if evidence.val_mse is None or not math.isfinite(evidence.val_mse):
        return RuleResult("failure", "reject", f"no finite val_mse (got {evidence.val_mse})")
    if evidence.failed_seeds:
        seeds = ", ".join(str(s) for s in evidence.failed_seeds)
        return RuleResult("failure", "reject", f"confirmation seed(s) {seeds} did not finish ok")
    return RuleResult("failure", "pass", "run finished ok")


def compared_values(
    evidence: CandidateEvidence, incumbent: IncumbentEvidence
) -> tuple[float, float, tuple[int, ...]]:
    """The two values to compare: means over the shared seeds, else the main val MSEs.

    Shared seeds are used only when the candidate was confirmed (more than one seed);
    with a single seed each, the runs' own val MSEs are compared.
    """
    shared = tuple(sorted(set(evidence.seed_val_mse) & set(incumbent.seed_val_mse)))
    if len(evidence.seed_val_mse) > 1 and shared:
        candidate = statistics.fmean(evidence.seed_val_mse[s] for s in shared)
        return candidate, statistics.fmean(incumbent.seed_val_mse[s] for s in shared), shared
    assert evidence.val_mse is not None, "check_failure runs first"
    return evidence.val_mse, incumbent.val_mse, ()


def relative_change(candidate: float, incumbent: float) -> float:
    """(candidate - incumbent) / incumbent; negative is an improvement."""
    return (candidate - incumbent) / max(abs(incumbent), 1e-12)


def paired_t(evidence: CandidateEvidence, incumbent: IncumbentEvidence,
             seeds: Sequence[int]) -> float | None:
    """The t-statistic of the per-seed relative improvements (None below 2 seeds)."""
    if len(seeds) < 2:
        return None
    gains = [
        -relative_change(evidence.seed_val_mse[s], incumbent.seed_val_mse[s]) for s in seeds
    ]
    spread = statistics.stdev(gains)
    if spread == 0.0:
        return math.inf if statistics.fmean(gains) > 0 else 0.0
    return statistics.fmean(gains) / (spread / math.sqrt(len(gains)))


def check_improvement(
    evidence: CandidateEvidence, incumbent: IncumbentEvidence | None, thresholds: GateThresholds
) -> RuleResult:
    """Compare val MSE with the incumbent: accept, reject or borderline (see module doc)."""
    if evidence.val_mse is None:
        return RuleResult("improvement", "reject", "no val_mse to compare")
    if incumbent is None:
        return RuleResult("improvement", "accept", "no incumbent yet: accepted as the baseline")
    candidate, base, seeds = compared_values(evidence, incumbent)
    change = relative_change(candidate, base)
    over = f" (mean over seeds {list(seeds)})" if seeds else ""
    text = f"val_mse {candidate:.6g} vs incumbent {incumbent.run_id} {base:.6g}{over}: "
    text += f"{change:+.2%}"
    if change > thresholds.reject_degradation + _TOLERANCE:
        outcome: RuleOutcome = "reject"
        text += f", worse than the {thresholds.reject_degradation:.2%} reject threshold"
    elif change < -thresholds.accept_improvement - _TOLERANCE:
        outcome, text = _noise_check(evidence, incumbent, seeds, thresholds, text)
    else:
        outcome = "borderline"
        text += (f", between -{thresholds.accept_improvement:.2%} and "
                 f"+{thresholds.reject_degradation:.2%}")
    return RuleResult("improvement", outcome, text, change, seeds)


def _noise_check(evidence: CandidateEvidence, incumbent: IncumbentEvidence,
                 seeds: Sequence[int], thresholds: GateThresholds,
                 text: str) -> tuple[RuleOutcome, str]:
    t_value = paired_t(evidence, incumbent, seeds)
    if t_value is not None and t_value < thresholds.noise_t:
        return "borderline", text + (
            f", better than the {thresholds.accept_improvement:.2%} accept threshold but within "
            f"seed noise (paired t {t_value:.2f} < {thresholds.noise_t:g})"
        )
    return "accept", text + f", better than the {thresholds.accept_improvement:.2%} threshold"


def _losses(history: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    points = []
    for epoch in history:
        train, val = epoch.get("train_loss"), epoch.get("val_loss")
        if isinstance(train, int | float) and isinstance(val, int | float):
            points.append((float(train), float(val)))
    return points


def _relative_gap(train: float, val: float) -> float:
    return (val - train) / max(abs(train), 1e-12)


def check_overfitting(
    history: Sequence[Mapping[str, Any]], thresholds: GateThresholds
) -> RuleResult:
    """Reject when the run ends overfitting: see the module docstring for the definition."""
    points = _losses(history)
    streak = 0
    for (train_a, val_a), (train_b, val_b) in zip(points[-2::-1], points[::-1], strict=False):
        if not (val_b > val_a and train_b < train_a):
            break
        streak += 1
    if streak < thresholds.overfit_epochs:
        return RuleResult("overfitting", "pass",
                          f"val loss rose with train loss falling for {streak} final epoch(s)")
    start, end = points[-1 - streak], points[-1]
    widening = _relative_gap(*end) - _relative_gap(*start)
    text = (f"val loss rose for {streak} epochs while train loss fell; relative gap "
            f"(val-train)/train widened by {widening:.3f}")
    if widening > thresholds.overfit_gap + _TOLERANCE:
        return RuleResult("overfitting", "reject",
                          f"overfitting: {text} > {thresholds.overfit_gap:g}")
    return RuleResult("overfitting", "pass", f"{text} <= {thresholds.overfit_gap:g}")


class GateRule(ABC):
    """One rule of the gate. A new rule is one subclass plus one line in ``RULES``."""

    name: str = "rule"

    @abstractmethod
    def check(
        self,
        evidence: CandidateEvidence,
        incumbent: IncumbentEvidence | None,
        thresholds: GateThresholds,
    ) -> RuleResult:
        """Judge the candidate; return ``pass`` when the rule has nothing to say."""


class FailureRule(GateRule):
    """Failed runs (any status but ok, pruned included) are rejected."""

    name = "failure"

    def check(self, evidence: CandidateEvidence, incumbent: IncumbentEvidence | None,
              thresholds: GateThresholds) -> RuleResult:
        return check_failure(evidence)


class ImprovementRule(GateRule):
    """Accept, reject or borderline on the val-MSE change against the incumbent."""

    name = "improvement"

    def check(self, evidence: CandidateEvidence, incumbent: IncumbentEvidence | None,
              thresholds: GateThresholds) -> RuleResult:
        return check_improvement(evidence, incumbent, thresholds)


class OverfittingRule(GateRule):
    """A run that ends overfitting is rejected."""

    name = "overfitting"

    def check(self, evidence: CandidateEvidence, incumbent: IncumbentEvidence | None,
              thresholds: GateThresholds) -> RuleResult:
        return check_overfitting(evidence.history, thresholds)


RULES: tuple[GateRule, ...] = (FailureRule(), OverfittingRule(), ImprovementRule())


def evaluate_gate(
    evidence: CandidateEvidence,
    incumbent: IncumbentEvidence | None,
    thresholds: GateThresholds | None = None,
    rules: Sequence[GateRule] = RULES,
) -> GateVerdict:
    """Combine the rules: a failure short-circuits; reject beats borderline beats accept.

    Args:
        evidence: the candidate's status, val MSE per seed and history.
        incumbent: the incumbent's evidence, or None before the first success (baseline).
        thresholds: gate thresholds (defaults when None).
        rules: the rules to apply, in order.
    """
    thresholds = thresholds or GateThresholds()
    failure = check_failure(evidence)
    if failure.outcome == "reject":
        return GateVerdict("reject", (failure.reason,), results=(failure,))
    results = tuple(rule.check(evidence, incumbent, thresholds) for rule in rules)
    improvement = next((r for r in results if r.rule == "improvement"), None)
    change = improvement.relative_change if improvement else None
    seeds = improvement.compared_seeds if improvement else ()
    for verdict in ("reject", "borderline", "accept"):
        reasons = tuple(r.reason for r in results if r.outcome == verdict)
        if reasons:
            return GateVerdict(verdict, reasons, change, seeds, results)
    return GateVerdict("borderline", ("no rule was decisive",), change, seeds, results)


def policy_decision(candidate_mean: float, incumbent_mean: float, margin: float = 0.0) -> bool:
    """Deterministic offline evaluator for a borderline: accept only if it beats the incumbent.

    Args:
        candidate_mean: candidate's val MSE (mean over the confirmation seeds when used).
        incumbent_mean: incumbent's val MSE over the same seeds.
        margin: relative improvement required on top (0 = strictly better).
    """
    return relative_change(candidate_mean, incumbent_mean) < -margin - _TOLERANCE


def guarded_policy_decision(evidence: CandidateEvidence, incumbent: IncumbentEvidence,
                            thresholds: GateThresholds) -> tuple[bool, str]:
    """A noise-aware offline evaluator for a borderline: (accept, reason).

    It accepts only a candidate that beats the incumbent (``policy_decision``) and, when
    two or more shared seeds are compared, whose paired improvement has a t-statistic of
    at least ``noise_t``. Plain ``policy_decision`` accepts about half of the borderlines
    of an A/A test (the same config with new seeds), including accepts the noise check
    downgraded; see ``benchmarks/gate_calibration.py``.
    """
    candidate, base, seeds = compared_values(evidence, incumbent)
    over = f"mean over seeds {list(seeds)}" if seeds else "single seed"
    if not policy_decision(candidate, base):
        return False, f"{candidate:.6g} does not beat incumbent {base:.6g} ({over})"
    t_value = paired_t(evidence, incumbent, seeds)
    if t_value is not None and t_value < thresholds.noise_t:
        return False, (f"{candidate:.6g} beats incumbent {base:.6g} ({over}) but within seed "
                       f"noise (paired t {t_value:.2f} < {thresholds.noise_t:g})")
    return True, f"{candidate:.6g} beats incumbent {base:.6g} ({over})"
