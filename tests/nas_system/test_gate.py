"""The rule gate: verdicts at and around each threshold."""

from __future__ import annotations

from typing import Any

import pytest

from informer_nas.errors import ConfigError
from informer_nas.nas_system.gate import (
    RULES,
    CandidateEvidence,
    GateRule,
    GateThresholds,
    IncumbentEvidence,
    RuleResult,
    check_overfitting,
    evaluate_gate,
    guarded_policy_decision,
    policy_decision,
)
from informer_nas.nas_system.records import RunRecord, RunStatus, SeedResult

INCUMBENT = IncumbentEvidence("run_0000", 1.0)


def candidate(val_mse: float | None, status: RunStatus = RunStatus.OK,
              history: list[dict[str, Any]] | None = None) -> CandidateEvidence:
    return CandidateEvidence(status, val_mse, history=history or [])


def curve(pairs: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """History epochs from (train_loss, val_loss) pairs."""
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(pairs)]


@pytest.mark.parametrize(
    ("val_mse", "expected"),
    [
        (0.970, "accept"),  # 3 % better: beyond the 2 % accept threshold
        (0.9799, "accept"),  # just past -2 %
        (0.980, "borderline"),  # exactly -2 %: the accept threshold is strict
        (0.990, "borderline"),  # 1 % better: inside the band
        (1.000, "borderline"),  # equal
        (1.005, "borderline"),  # exactly +0.5 %: the reject threshold is strict
        (1.0051, "reject"),  # just past +0.5 %
        (1.100, "reject"),  # 10 % worse
    ],
    ids=["accept-3pct", "accept-just-past", "at-accept-edge", "band-1pct", "equal",
         "at-reject-edge", "reject-just-past", "reject-10pct"],
)
def test_improvement_thresholds(val_mse: float, expected: str) -> None:
    verdict = evaluate_gate(candidate(val_mse), INCUMBENT)
    assert verdict.verdict == expected
    assert verdict.relative_change == pytest.approx(val_mse - 1.0)
    assert verdict.is_decisive is (expected != "borderline")


@pytest.mark.parametrize(
    "status",
    [RunStatus.CRASHED, RunStatus.DIVERGED, RunStatus.OOM, RunStatus.TIMEOUT,
     RunStatus.INTERRUPTED, RunStatus.PRUNED, RunStatus.INVALID_CONFIG],
    ids=lambda status: status.value,  # every non-ok status rejects, pruned included
)
def test_failed_runs_are_rejected(status: RunStatus) -> None:
    verdict = evaluate_gate(CandidateEvidence(status, 0.1, reason="it broke"), INCUMBENT)
    assert verdict.verdict == "reject"
    assert verdict.reasons == (f"run {status.value}: it broke",)


@pytest.mark.parametrize(
    "val_mse", [None, float("nan"), float("inf")], ids=["none", "nan", "inf"],
)  # an ok status without a finite val_mse is a failure too
def test_ok_without_finite_metric_is_rejected(val_mse: float | None) -> None:
    assert evaluate_gate(candidate(val_mse), INCUMBENT).verdict == "reject"


def test_first_success_is_accepted_as_baseline() -> None:
    verdict = evaluate_gate(candidate(5.0), None)
    assert verdict.verdict == "accept" and "baseline" in verdict.reasons[0]


def test_first_failure_is_still_rejected() -> None:
    assert evaluate_gate(candidate(None, RunStatus.CRASHED), None).verdict == "reject"


HEALTHY = [(1.0, 1.5), (0.8, 1.3), (0.7, 1.2), (0.6, 1.1)]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        # val rises 3 epochs while train falls and the relative gap widens a lot
        (HEALTHY + [(0.5, 1.2), (0.4, 1.3), (0.3, 1.4)], "reject"),
        # only 2 rising epochs: below overfit_epochs = 3
        (HEALTHY + [(0.5, 1.2), (0.4, 1.3)], "pass"),
        # 3 rising epochs but the gap barely widens (noise-level wiggle)
        (HEALTHY + [(0.599, 1.101), (0.598, 1.102), (0.597, 1.103)], "pass"),
        # val rises but train rises too: not overfitting (e.g. a too-high lr)
        (HEALTHY + [(0.7, 1.2), (0.8, 1.3), (0.9, 1.4)], "pass"),
        # rising streak broken at the end: the run recovered
        (HEALTHY + [(0.5, 1.2), (0.4, 1.3), (0.3, 1.4), (0.2, 1.0)], "pass"),
        # a curve too short to judge
        ([(1.0, 1.0)], "pass"),
    ],
    ids=["overfits", "streak-too-short", "gap-too-small", "train-rising", "recovered",
         "one-epoch"],
)
def test_overfitting_rule(pairs: list[tuple[float, float]], expected: str) -> None:
    result = check_overfitting(curve(pairs), GateThresholds())
    assert result.outcome == expected


@pytest.mark.parametrize(
    ("overfit_gap", "expected"),
    [
        (0.44, "reject"),  # widening 0.45 above the threshold
        (0.45, "pass"),  # exactly at the threshold: strict
        (0.46, "pass"),  # below the threshold
    ],
    ids=["above", "at-edge", "below"],
)
def test_overfitting_gap_threshold_edge(overfit_gap: float, expected: str) -> None:
    # relative gap (val-train)/train goes from 0.5 to (1.56-0.8)/0.8 = 0.95: widening 0.45
    history = curve([(1.0, 1.5), (0.9, 1.52), (0.85, 1.54), (0.8, 1.56)])
    thresholds = GateThresholds(overfit_gap=overfit_gap)
    assert check_overfitting(history, thresholds).outcome == expected


def test_overfitting_rejects_even_an_improvement() -> None:
    history = curve(HEALTHY + [(0.5, 1.2), (0.4, 1.3), (0.3, 1.4)])
    verdict = evaluate_gate(candidate(0.5, history=history), INCUMBENT)
    assert verdict.verdict == "reject"
    assert any("overfitting" in reason for reason in verdict.reasons)


def test_history_epochs_without_losses_are_skipped() -> None:
    history = curve(HEALTHY) + [{"epoch": 5, "train_loss": None, "val_loss": None}]
    assert check_overfitting(history, GateThresholds()).outcome == "pass"


def seeded(values: dict[int, float], main_seed: int = 0) -> CandidateEvidence:
    return CandidateEvidence(RunStatus.OK, values[main_seed], values)


@pytest.mark.parametrize(
    ("cand", "inc", "expected"),
    [
        # consistent 5 % gain on every shared seed: accept
        ({0: 0.95, 1: 0.95, 2: 0.952, 3: 0.948}, {9: 2.0, 1: 1.0, 2: 1.001, 3: 0.999}, "accept"),
        # mean 3 % better but one seed much worse: within seed noise -> borderline
        ({0: 0.5, 1: 0.80, 2: 0.80, 3: 1.31}, {9: 0.5, 1: 1.0, 2: 1.0, 3: 1.0}, "borderline"),
        # mean over shared seeds 1 % worse although the main seed looked 50 % better
        ({0: 0.5, 1: 1.01, 2: 1.01}, {9: 1.0, 1: 1.0, 2: 1.0}, "reject"),
        # no shared seed: falls back to the main val_mse (0.5 vs 1.0)
        ({0: 0.5, 5: 1.0}, {9: 1.0}, "accept"),
    ],
    ids=["paired-accept", "noisy-accept-is-borderline", "mean-reject", "no-shared-seeds"],
)
def test_confirmation_seeds_compare_means_over_shared_seeds(
    cand: dict[int, float], inc: dict[int, float], expected: str
) -> None:
    incumbent = IncumbentEvidence("run_0000", inc[9], inc)
    assert evaluate_gate(seeded(cand), incumbent).verdict == expected


def test_shared_seeds_are_reported() -> None:
    incumbent = IncumbentEvidence("run_0000", 1.0, {9: 1.0, 1: 1.0, 2: 1.0})
    verdict = evaluate_gate(seeded({0: 0.5, 1: 0.9, 2: 0.9}), incumbent)
    assert verdict.compared_seeds == (1, 2)
    assert verdict.relative_change == pytest.approx(-0.1)


def test_failed_confirmation_seed_rejects() -> None:
    evidence = CandidateEvidence(RunStatus.OK, 0.5, {0: 0.5}, failed_seeds=(3,))
    verdict = evaluate_gate(evidence, INCUMBENT)
    assert verdict.verdict == "reject" and "3" in verdict.reasons[0]


def test_evidence_from_records() -> None:
    record = RunRecord(
        run_id="run_0003", iteration=3, status=RunStatus.OK, seed=11, val_mse=0.9,
        seeds=[SeedResult(seed=1, status=RunStatus.OK, val_mse=0.8, run_dir="runs/x/seed_1"),
               SeedResult(seed=2, status=RunStatus.DIVERGED, run_dir="runs/x/seed_2")],
    )
    evidence = CandidateEvidence.from_record(record)
    assert dict(evidence.seed_val_mse) == {11: 0.9, 1: 0.8}
    assert evidence.failed_seeds == (2,)
    assert dict(IncumbentEvidence.from_record(record).seed_val_mse) == {11: 0.9, 1: 0.8}


def test_incumbent_without_metric_is_refused() -> None:
    record = RunRecord(run_id="run_0001", iteration=1, status=RunStatus.CRASHED)
    with pytest.raises(ConfigError, match="run_0001"):
        IncumbentEvidence.from_record(record)


@pytest.mark.parametrize(
    "kwargs",
    [{"accept_improvement": -0.1}, {"reject_degradation": float("nan")},
     {"overfit_epochs": 0}],
    ids=["negative", "nan", "zero-epochs"],  # thresholds are validated at construction
)
def test_invalid_thresholds_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="gate threshold"):
        GateThresholds(**kwargs)


def test_custom_thresholds() -> None:
    loose = GateThresholds(accept_improvement=0.0, reject_degradation=0.5)
    assert evaluate_gate(candidate(0.999), INCUMBENT, loose).verdict == "accept"
    assert evaluate_gate(candidate(1.2), INCUMBENT, loose).verdict == "borderline"


@pytest.mark.parametrize(
    ("cand_mean", "inc_mean", "margin", "expected"),
    [
        (0.99, 1.0, 0.0, True),  # strictly better mean: accept
        (1.0, 1.0, 0.0, False),  # a tie is not an improvement
        (1.01, 1.0, 0.0, False),  # worse: refuse
        (0.99, 1.0, 0.02, False),  # better, but not by the required margin
    ],
    ids=["better", "tie", "worse", "under-margin"],
)
def test_policy_decision(cand_mean: float, inc_mean: float, margin: float,
                         expected: bool) -> None:
    assert policy_decision(cand_mean, inc_mean, margin) is expected


class AlwaysBorderline(GateRule):
    name = "always"

    def check(self, evidence: CandidateEvidence, incumbent: IncumbentEvidence | None,
              thresholds: GateThresholds) -> RuleResult:
        return RuleResult(self.name, "borderline", "always unsure")


def test_a_new_rule_is_one_subclass() -> None:
    verdict = evaluate_gate(candidate(0.5), INCUMBENT, rules=(*RULES, AlwaysBorderline()))
    assert verdict.verdict == "borderline"  # borderline beats accept
    assert verdict.reasons == ("always unsure",)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_rule_contract(rule: GateRule) -> None:
    """Every registered rule returns a named result and passes a plain healthy run."""
    result = rule.check(candidate(0.9, history=curve(HEALTHY)), INCUMBENT, GateThresholds())
    assert result.rule == rule.name
    assert result.outcome in ("accept", "pass") and result.reason


@pytest.mark.parametrize(
    ("noise_t", "expected"),
    [
        (6.0, "accept"),  # paired t 6.93 clears the noise bar
        (7.0, "borderline"),  # paired t 6.93 does not: within seed noise
    ],
    ids=["beyond-noise", "within-noise"],
)
def test_noise_t_threshold(noise_t: float, expected: str) -> None:
    # per-seed gains 5 %, 3 %, 4 %: mean 4 %, sd 1 %, t = 0.04 / (0.01 / sqrt(3)) = 6.93
    incumbent = IncumbentEvidence("run_0000", 1.0, {9: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    evidence = seeded({0: 0.9, 1: 0.95, 2: 0.97, 3: 0.96})
    verdict = evaluate_gate(evidence, incumbent, GateThresholds(noise_t=noise_t))
    assert verdict.verdict == expected


@pytest.mark.parametrize(
    ("cand", "expected", "words"),
    [
        # noisy gains (+20 %, +20 %, -31 %): mean 3 % better, paired t 0.18 -> rejected
        ({0: 0.5, 1: 0.80, 2: 0.80, 3: 1.31}, False, "within seed noise (paired t 0.18 < 3)"),
        # consistent 1 % gain: t far above 3 -> accepted
        ({0: 0.99, 1: 0.99, 2: 0.989, 3: 0.991}, True, "beats incumbent 1"),
        # mean worse: rejected whatever the t
        ({0: 0.9, 1: 1.01, 2: 1.0, 3: 1.0}, False, "does not beat"),
    ],
    ids=["noisy-gain", "consistent-gain", "worse"],
)
def test_guarded_policy(cand: dict[int, float], expected: bool, words: str) -> None:
    incumbent = IncumbentEvidence("run_0000", 1.0, {9: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    accept, reason = guarded_policy_decision(seeded(cand), incumbent, GateThresholds())
    assert accept is expected and words in reason


def test_guarded_policy_single_seed_is_plain_policy() -> None:
    assert guarded_policy_decision(candidate(0.99), INCUMBENT, GateThresholds())[0]
    assert not guarded_policy_decision(candidate(1.0), INCUMBENT, GateThresholds())[0]
