"""Gate calibration: an A/A test of the rule gate and the offline policy (issue 6).

The incumbent config is resubmitted as a candidate with a new seed; since nothing
changed, every accept is wrong. Each trial, in a fresh tiny (or quick) workspace, runs
exactly what a session runs (``launch_training``, ``decision.decide`` with the offline
``PolicyEvaluator`` for borderlines, ``decision.commit``), with the real trainer
in-process (``Trainer.fit`` on data loaded once; the run files written as ``train.py``
writes them):

1. train the incumbent (main seed ``a``); the gate accepts it as the baseline;
2. train the same config as the candidate (main seed ``b``);
3. decide with ``confirm_seeds=0``: main seed against main seed;
4. decide with ``confirm_seeds=3``: both retrained with the session's three confirmation
   seeds (shared by every run), compared on their means over those seeds with the
   paired t-test of the gate.

With a deterministic trainer (CPU: same config and seed give the same numbers) the
shared confirmation seeds reproduce the incumbent's results exactly, so the K=3 decision
sees no difference at all: the A/A rate is 0 by construction (common random numbers),
which the benchmark checks and reports. ``--independent`` (on by default) also measures
the gate when the two sides do not share seeds (a nondeterministic GPU trainer, or
seeds not shared): the candidate gets three other seeds, paired slot by slot with the
incumbent's. Each trial uses its own base seed (``--seed + 1000 * trial``), so trials are
independent.

Every borderline is judged twice: by the plain rule "accept when the mean is strictly
better" (about half the borderlines of an A/A test) and by ``gate.guarded_policy_decision``
(also needs a paired t >= ``noise_t`` over >= 2 shared seeds), which is what the session's
offline ``PolicyEvaluator`` runs; the table gives both. The K=0 and K=3 shared rows run the
session's own ``decide`` with ``PolicyEvaluator``, so both columns agree there.

Usage::

    python benchmarks/gate_calibration.py --trials 4       # a check: ~11 trainings a trial
    python benchmarks/gate_calibration.py --trials 100     # the full run, machine quiet
    python benchmarks/gate_calibration.py --trials 40 --preset quick --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from informer_nas.agents.policy import PolicyEvaluator
from informer_nas.informer.config import InformerConfig
from informer_nas.informer.data import load_dataset
from informer_nas.informer.run_files import (
    CONFIG_USED,
    METRICS,
    config_used_text,
    write_history,
    write_json,
)
from informer_nas.informer.train import load_run_config
from informer_nas.informer.training import Trainer
from informer_nas.informer.windows import ETTData
from informer_nas.nas_system.context import find_run
from informer_nas.nas_system.decision import Decision, commit, decide
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    GateThresholds,
    IncumbentEvidence,
    compared_values,
    evaluate_gate,
    guarded_policy_decision,
    policy_decision,
)
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import IterationScratch, load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.launch_training import confirmation_seeds, ensure_seeds, launch_training

CONFIRM = 3
INDEPENDENT_OFFSET = 200_000


class InProcessTrainer:
    """The real trainer in this process, writing ``config_used.py``, history and metrics."""

    def __init__(self) -> None:
        self.data: dict[str, ETTData] = {}
        self.trainings = 0
        self.seconds = 0.0
        self.values: dict[int, float] = {}  # seed -> val_mse (the config never changes)

    def dataset(self, config: InformerConfig) -> ETTData:
        training = config.training
        key = json.dumps([config.data.model_dump(mode="json"), config.model.embed,
                          training.max_train_windows, training.max_eval_windows])
        if key not in self.data:
            self.data[key] = load_dataset(config.data, config.model.embed,
                                          training.max_train_windows, training.max_eval_windows)
        return self.data[key]

    def __call__(self, request: TrainRequest) -> TrainOutcome:
        started = time.perf_counter()
        config, source = load_run_config(request.config_path, request.seed)
        run_dir = request.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_USED).write_text(config_used_text(source, config), encoding="utf-8")
        result = Trainer(config, data=self.dataset(config)).fit()
        metrics = result.metrics()
        write_history(run_dir, result.history)
        write_json(run_dir / METRICS, metrics)
        seconds = time.perf_counter() - started
        self.trainings += 1
        self.seconds += seconds
        if metrics["val_mse"] is not None:
            self.values[request.seed] = float(metrics["val_mse"])
        return TrainOutcome(RunStatus(metrics["status"]), metrics["reason"], metrics, seconds, 0)


@dataclass
class TrialResult:
    """One A/A trial: the decisions and the numbers behind them."""

    trial: int
    incumbent_val_mse: float | None
    candidate_val_mse: float | None
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    reproduced: bool | None = None  # shared confirmation seeds gave identical results


def _decision_dict(ctx: ToolContext, run_id: str, decision: Decision) -> dict[str, Any]:
    """The session's decision, and what ``guarded_policy_decision`` would have said."""
    guarded = decision.accepted
    if decision.verdict == "borderline":
        record, incumbent = find_run(ctx, run_id), find_run(ctx, ctx.state.incumbent_run_id)
        assert record is not None and incumbent is not None
        guarded = guarded_policy_decision(CandidateEvidence.from_record(record),
                                          IncumbentEvidence.from_record(incumbent),
                                          ctx.settings.thresholds)[0]
    return {"verdict": decision.verdict, "accepted": decision.accepted,
            "guarded_accepted": guarded, "decided_by": decision.decided_by,
            "reason": decision.reason}


def _launch(ctx: ToolContext, iteration: int, seed: int) -> RunRecord:
    ctx.state.current = IterationScratch(iteration=iteration)
    ctx.save()
    run_id = json.loads(launch_training(ctx, seed=seed))["run_id"]
    record = find_run(ctx, run_id)
    assert record is not None
    return record


def _decide(ctx: ToolContext, run_id: str, confirm: int) -> Decision:
    ctx.settings = dataclasses.replace(ctx.settings, confirm_seeds=confirm)
    record = find_run(ctx, run_id)
    assert record is not None
    return decide(ctx, record, PolicyEvaluator(), confirm=ensure_seeds)


def independent_decision(trainer: InProcessTrainer, ctx: ToolContext, incumbent: RunRecord,
                         candidate: RunRecord, base: int,
                         thresholds: GateThresholds) -> dict[str, Any]:
    """K=3 without shared seeds: the candidate's three other seeds paired with the
    incumbent's confirmation seeds slot by slot; gate, then the policy for a borderline."""
    assert incumbent.val_mse is not None and candidate.val_mse is not None
    single = evaluate_gate(CandidateEvidence(RunStatus.OK, candidate.val_mse),
                           IncumbentEvidence(incumbent.run_id, incumbent.val_mse), thresholds)
    if single.verdict == "reject":  # as in a session: no confirmation for a clear reject
        return {"verdict": "reject", "accepted": False, "guarded_accepted": False,
                "decided_by": "rules", "reason": "; ".join(single.reasons)}
    shared = confirmation_seeds(base, CONFIRM)
    others = [base + INDEPENDENT_OFFSET + k for k in range(1, CONFIRM + 1)]
    run_dir = ctx.workspace.paths.run_dir(candidate.run_id)
    config = run_dir / CONFIG_USED
    for seed in others:
        trainer(TrainRequest(config, run_dir / f"independent_{seed}", seed, None))
    if any(seed not in trainer.values for seed in [*shared, *others]):
        return {"verdict": "reject", "accepted": False, "guarded_accepted": False,
                "decided_by": "rules", "reason": "a seed failed"}
    slots = range(1, CONFIRM + 1)
    evidence = CandidateEvidence(
        RunStatus.OK, candidate.val_mse, {k: trainer.values[others[k - 1]] for k in slots})
    base_evidence = IncumbentEvidence(
        incumbent.run_id, incumbent.val_mse, {k: trainer.values[shared[k - 1]] for k in slots})
    verdict = evaluate_gate(evidence, base_evidence, thresholds)
    reason = "; ".join(verdict.reasons)
    if verdict.is_decisive:
        accepted = verdict.verdict == "accept"
        return {"verdict": verdict.verdict, "accepted": accepted, "guarded_accepted": accepted,
                "decided_by": "rules", "reason": reason}
    mean, base_mean, _ = compared_values(evidence, base_evidence)
    guarded, why = guarded_policy_decision(evidence, base_evidence, thresholds)
    return {"verdict": "borderline", "accepted": policy_decision(mean, base_mean),  # plain
            "guarded_accepted": guarded, "decided_by": "policy",
            "reason": f"{reason}; guarded policy: {why}"}


def run_trial(trainer: InProcessTrainer, root: Path, preset: str, trial: int, base: int,
              independent: bool) -> TrialResult:
    """One A/A trial in a fresh workspace (see the module docstring)."""
    workspace = Workspace.create(root / f"trial_{trial:03d}", preset)
    settings = SessionSettings(seed=base, prune=False)
    ctx = ToolContext(workspace, load_state(workspace.paths), settings,
                      CallableExecutor(trainer))
    incumbent = _launch(ctx, 1, base + 1)
    commit(ctx, incumbent, _decide(ctx, incumbent.run_id, 0))
    if ctx.state.incumbent_run_id != incumbent.run_id:
        raise RuntimeError(f"trial {trial}: the baseline was not accepted: {incumbent}")
    candidate = _launch(ctx, 2, base + 2)
    result = TrialResult(trial, incumbent.val_mse, candidate.val_mse)
    for name, confirm in (("K=0", 0), ("K=3 shared", CONFIRM)):
        decision = _decide(ctx, candidate.run_id, confirm)
        result.decisions[name] = _decision_dict(ctx, candidate.run_id, decision)
    inc, cand = find_run(ctx, incumbent.run_id), find_run(ctx, candidate.run_id)
    assert inc is not None and cand is not None
    by_seed = {s.seed: s.val_mse for s in inc.seeds}
    pairs = [(by_seed.get(s.seed), s.val_mse) for s in cand.seeds]
    if pairs:  # none when the single-seed gate rejected outright
        result.reproduced = all(a == b and a is not None for a, b in pairs)
    if independent:
        result.decisions["K=3 independent"] = independent_decision(
            trainer, ctx, inc, cand, base, settings.thresholds)
    return result


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def report(results: Sequence[TrialResult], trainer: InProcessTrainer, preset: str,
           wall: float) -> str:
    lines = [f"### Gate A/A calibration ({preset} preset, {len(results)} trials)", "",
             "Wrongly accepted (every accept is wrong: the candidate is the incumbent's "
             "config), with a plain policy (a borderline is accepted when its mean is strictly "
             "better) and with `guarded_policy_decision`, the session's offline evaluator "
             "(K=0 and K=3 shared run the session's own `decide`, so both columns agree).", "",
             "| comparison | wrongly accepted | 95 % CI | guarded policy | 95 % CI "
             "| decided by rules | borderline (policy) |",
             "|---|---:|---|---:|---|---:|---:|"]
    for name in results[0].decisions if results else ():
        decisions = [r.decisions[name] for r in results if name in r.decisions]
        n = len(decisions)
        cells = []
        for key in ("accepted", "guarded_accepted"):
            wrong = sum(bool(d[key]) for d in decisions)
            low, high = wilson(wrong, n)
            cells.append(f"{wrong}/{n} ({wrong / n:.1%}) | [{low:.1%}, {high:.1%}]")
        rules = sum(d["decided_by"] == "rules" for d in decisions)
        lines.append(f"| {name} | {' | '.join(cells)} | {rules} | {n - rules} |")
    values = list(trainer.values.values())
    if len(values) > 1:
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) / mean
        lines += ["", f"Val MSE over {len(values)} seeds: mean {mean:.4f}, "
                      f"coefficient of variation {spread:.1%}."]
    confirmed = [r for r in results if r.reproduced is not None]
    reproduced = sum(bool(r.reproduced) for r in confirmed)
    lines += [f"Shared confirmation seeds reproduced exactly in {reproduced}/{len(confirmed)} "
              "confirmed trials (when all do, the K=3 shared comparison sees no difference).",
              f"{trainer.trainings} trainings, {trainer.seconds:.0f} s of training, "
              f"wall time {wall:.0f} s."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="A/A trials")
    parser.add_argument("--preset", choices=("tiny", "quick"), default="tiny")
    parser.add_argument("--seed", type=int, default=0, help="base seed of trial 0")
    parser.add_argument("--no-independent", dest="independent", action="store_false",
                        help="skip the K=3 comparison without shared seeds")
    parser.add_argument("--json", type=Path, default=None, help="write every trial here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    trainer = InProcessTrainer()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="nas-gate-aa-") as tmp:
        for trial in range(args.trials):
            base = args.seed + 1000 * trial
            results.append(run_trial(trainer, Path(tmp), args.preset, trial, base,
                                     args.independent))
            logging.getLogger(__name__).warning("trial %d: %s", trial, {
                name: d["accepted"] for name, d in results[-1].decisions.items()})
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    print(report(results, trainer, args.preset, time.perf_counter() - started))


if __name__ == "__main__":
    main()
