"""Overhead of the search machinery per iteration, training excluded (issue 3).

A stub trainer (``CallableExecutor``) writes what the real one writes (``config_used.py``,
``history.json``, ``metrics.json``) in about a millisecond and honours the pruning
thresholds; the time it takes is measured and subtracted. Three measurements:

1. **session**: real sessions (``run_nas_optimization`` -> ``run_session``: tpe brain
   through the Agents SDK runner with its offline model, Optuna journal study, policy
   evaluator, trace recording, pruning on) for ``--iters`` iterations on the tiny preset.
   Per-iteration time = from one ``iteration_start`` event to the next (the last one to
   ``session_end``), stub time subtracted. The first iteration (imports, study creation)
   is reported apart.
2. **tools**: one iteration through the tool functions in a workspace that already holds
   N runs (synthetic records with curve summaries and history files): ``get_config``,
   ``edit_config``, ``launch_training`` (prune thresholds from N histories included),
   gate + policy (``decision.decide``), commit (``decision.commit``: the state save).
3. **state save**: ``save_state`` after appending a run record, at N runs (median and
   max over ``--saves`` saves; the max includes the periodic snapshot compaction).

Targets: < 0.5 s per iteration excluding training; save cost roughly flat in N.

Usage::

    python benchmarks/overhead.py                 # about 30 s on a shared 2-core CPU
    python benchmarks/overhead.py --iters 5 --sizes 10 100 --saves 10   # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from informer_nas.agents.policy import PolicyEvaluator
from informer_nas.api import run_nas_optimization
from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.decision import commit, decide
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.pruning import prune_decision
from informer_nas.nas_system.records import ConfigChange, RunRecord, RunStatus, SeedResult
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import (
    AgentState,
    IterationScratch,
    compact_state,
    load_state,
    save_state,
)
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.edit_config import apply_changes, edit_config
from informer_nas.tools.get_config import get_config
from informer_nas.tools.launch_training import launch_training
from informer_nas.tools.summarize_curve import curve_summary

TARGET_ITERATION_S = 0.5


class StubTrainer:
    """A ~1 ms stand-in for the trainer; ``seconds`` accumulates its own run time."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.executor = CallableExecutor(self.train)

    def train(self, request: TrainRequest) -> TrainOutcome:
        started = time.perf_counter()
        try:
            return self._train(request)
        finally:
            self.seconds += time.perf_counter() - started

    @staticmethod
    def _train(request: TrainRequest) -> TrainOutcome:
        run_dir = request.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        text = apply_changes(request.config_path.read_text(encoding="utf-8"),
                             [ConfigChange(key="training.seed", value=request.seed)])
        (run_dir / "config_used.py").write_text(text, encoding="utf-8")
        config = read_config_literal(run_dir / "config_used.py")
        lr = float(config["training"]["optimizer_params"]["lr"])
        base = 0.5 + abs(lr - 1e-3) * 50 + (request.seed % 7) * 0.003
        epochs = fake_epochs(base, int(config["training"]["max_epochs"]))
        curve = {e["epoch"]: e["val_mse"] for e in epochs}
        decision = prune_decision(curve, request.prune_thresholds or {})
        if decision is not None:
            epochs = epochs[:decision.epoch]
        (run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))
        status = RunStatus.OK if decision is None else RunStatus.PRUNED
        best = min(epochs, key=lambda e: e["val_mse"])
        metrics = {"status": status.value, "reason": "" if decision is None else "pruned",
                   "val_mse": best["val_mse"], "val_mae": best["val_mae"],
                   "test_mse": best["test_mse"], "test_mae": best["test_mae"],
                   "best_epoch": best["epoch"], "epochs_run": len(epochs), "n_params": 1000,
                   "train_seconds": 0.0, "samples_per_second": None, "device": "cpu",
                   "seed": request.seed}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        if request.on_event is not None:
            for epoch in epochs:
                request.on_event({"event": "epoch", **epoch})
        return TrainOutcome(status, metrics["reason"], metrics, 0.0, 0)


def fake_epochs(base: float, count: int) -> list[dict[str, Any]]:
    """A plausible history: train loss falling, val MSE falling then flat."""
    return [{"epoch": e, "train_loss": base * (1.4 - 0.05 * e),
             "val_loss": base * (1.2 - 0.1 * min(e, 4)), "val_mse": base * (1.2 - 0.1 * min(e, 4)),
             "val_mae": base, "test_mse": base * 1.1, "test_mae": base, "lr": 1e-3,
             "seconds": 1.0} for e in range(1, count + 1)]


# ---- 1. session -------------------------------------------------------------------------


def session_iterations(root: Path, iters: int) -> list[float]:
    """Seconds per iteration of a real tpe session, stub training time subtracted."""
    stub = StubTrainer()
    marks: list[tuple[float, float]] = []  # (wall clock, stub seconds so far)

    def observe(event: dict[str, Any]) -> None:
        if event.get("event") in ("iteration_start", "session_end"):
            marks.append((time.perf_counter(), stub.seconds))

    run_nas_optimization(root, iters=iters, planner="tpe", preset="tiny", seed=0,
                         executor=stub.executor, quiet=True, observer=observe)
    return [(t1 - t0) - (s1 - s0) for (t0, s0), (t1, s1) in zip(marks, marks[1:], strict=False)]


# ---- 2. tools, in a workspace with N runs -------------------------------------------------


def synthetic_record(index: int, history: list[dict[str, Any]]) -> RunRecord:
    """A finished run as the session leaves it (changes, verdict, summary, 3 seeds)."""
    val = history[-1]["val_mse"]
    return RunRecord(
        run_id=f"run_{index:04d}", iteration=index + 1, status=RunStatus.OK, accepted=False,
        changes=[ConfigChange(key="training.optimizer_params.lr", value=1e-3 + index * 1e-7),
                 ConfigChange(key="model.dropout", value=0.05)],
        rationale="tpe trial", step_type="small", plan="sampled by TPE", reason="tpe",
        verdict="reject", verdict_reason="worse than the incumbent by 3.1 % (> 0.5 %)",
        decided_by="rules", seed=index, val_mse=val, val_mae=val, test_mse=val * 1.1,
        test_mae=val, mean_val_mse=val,
        seeds=[SeedResult(seed=100_001 + k, status=RunStatus.OK, val_mse=val, val_mae=val,
                          test_mse=val, test_mae=val, run_dir=f"runs/run_{index:04d}/seed_{k}")
               for k in range(3)],
        history_summary=curve_summary(history).to_dict(), seconds=60.0,
        started_at="2025-01-01T00:00:00+00:00", finished_at="2025-01-01T00:01:00+00:00",
    )


def populated_workspace(root: Path, n_runs: int) -> Workspace:
    """A tiny workspace holding ``n_runs`` finished runs (records, histories, configs)."""
    workspace = Workspace.create(root, "tiny")
    paths = workspace.paths
    state = load_state(paths)
    config_text = paths.config.read_text(encoding="utf-8")
    for index in range(n_runs):
        history = fake_epochs(0.6 + (index % 13) * 0.01, 2)
        state.runs.append(synthetic_record(index, history))
        run_dir = paths.run_dir(f"run_{index:04d}")
        run_dir.mkdir(parents=True)
        (run_dir / "history.json").write_text(json.dumps({"epochs": history}))
        (run_dir / "config_used.py").write_text(config_text)
    if n_runs:
        state.runs[0].accepted, state.incumbent_run_id = True, "run_0000"
    state.iteration = state.next_run_number = n_runs
    state.max_iterations = n_runs + 1000
    compact_state(paths, state)
    return workspace


STEPS = ("get_config", "edit_config", "launch_training", "gate+policy", "commit (save)")


def tool_iteration(ctx: ToolContext, stub: StubTrainer, number: int) -> dict[str, float]:
    """One iteration through the tools; seconds per step (stub training subtracted)."""
    times: dict[str, float] = {}
    ctx.state.current = IterationScratch(iteration=ctx.state.iteration + 1)
    ctx.save()

    def timed(name: str, function: Any, *args: Any) -> Any:
        before, stub_before = time.perf_counter(), stub.seconds
        result = function(*args)
        times[name] = time.perf_counter() - before - (stub.seconds - stub_before)
        return result

    timed("get_config", get_config, ctx)
    lr = ConfigChange(key="training.optimizer_params.lr", value=round(1e-3 * (1 + number / 50), 8))
    timed("edit_config", edit_config, ctx, [lr], "benchmark edit")
    summary = json.loads(timed("launch_training", launch_training, ctx))
    record = next(run for run in ctx.state.runs if run.run_id == summary["run_id"])
    decision = timed("gate+policy", decide, ctx, record, PolicyEvaluator())
    timed("commit (save)", commit, ctx, record, decision)
    return times


def tools_at(root: Path, n_runs: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of ``repeats`` tool iterations at ``n_runs`` runs."""
    workspace = populated_workspace(root, n_runs)
    stub = StubTrainer()
    ctx = ToolContext(workspace, load_state(workspace.paths), SessionSettings(seed=0),
                      stub.executor)
    samples = [tool_iteration(ctx, stub, k) for k in range(repeats)]
    medians = {step: statistics.median(s[step] for s in samples) for step in STEPS}
    medians["total"] = statistics.median(sum(s.values()) for s in samples)
    return medians


# ---- 3. state saves -------------------------------------------------------------------------


def save_costs(root: Path, n_runs: int, saves: int) -> tuple[float, float, int]:
    """(median s, max s, snapshot bytes) of ``save_state`` after appending one run."""
    workspace = populated_workspace(root, n_runs)
    paths = workspace.paths
    state: AgentState = load_state(paths)
    history = fake_epochs(0.7, 2)
    costs = []
    for k in range(saves):
        record = synthetic_record(n_runs + k, history)
        state.runs.append(record)
        started = time.perf_counter()
        save_state(paths, state)
        costs.append(time.perf_counter() - started)
    return statistics.median(costs), max(costs), paths.state.stat().st_size


# ---- report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report_session(times: Sequence[float]) -> list[str]:
    rest = list(times[1:]) or list(times)
    verdict = "yes" if statistics.median(rest) < TARGET_ITERATION_S else "NO"
    return [
        "### Session iterations (tpe brain, stub trainer, tiny preset)", "",
        "| iterations | first (ms) | median (ms) | mean (ms) | max (ms) | < 500 ms |",
        "|---:|---:|---:|---:|---:|:---:|",
        f"| {len(times)} | {ms(times[0])} | {ms(statistics.median(rest))} | "
        f"{ms(statistics.fmean(rest))} | {ms(max(rest))} | {verdict} |", "",
    ]


def report_tools(rows: dict[int, dict[str, float]]) -> list[str]:
    header = " | ".join(f"{step} (ms)" for step in STEPS)
    lines = ["### One iteration through the tools, by runs already in the workspace (median)",
             "", f"| runs | {header} | total (ms) |",
             "|---:|" + "---:|" * (len(STEPS) + 1)]
    for n_runs, medians in rows.items():
        cells = " | ".join(ms(medians[step]) for step in STEPS)
        lines.append(f"| {n_runs} | {cells} | {ms(medians['total'])} |")
    return [*lines, ""]


def report_saves(rows: dict[int, tuple[float, float, int]]) -> list[str]:
    lines = ["### save_state after appending one run", "",
             "| runs | median (ms) | max (ms) | snapshot (kB) |", "|---:|---:|---:|---:|"]
    for n_runs, (median, worst, size) in rows.items():
        lines.append(f"| {n_runs} | {ms(median)} | {ms(worst)} | {size / 1024:.0f} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=15, help="session iterations")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000],
                        help="runs already in the workspace")
    parser.add_argument("--repeats", type=int, default=5, help="tool iterations per size")
    parser.add_argument("--saves", type=int, default=30, help="state saves per size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="nas-overhead-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        session = session_iterations(root / "session", args.iters)
        tools = {n: tools_at(root / f"tools_{n}", n, args.repeats) for n in args.sizes}
        saves = {n: save_costs(root / f"saves_{n}", n, args.saves) for n in args.sizes}
        wall = time.perf_counter() - started
    lines = [*report_session(session), *report_tools(tools), *report_saves(saves),
             f"Wall time {wall:.1f} s."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
