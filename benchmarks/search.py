"""Search efficiency (issue 7): brains compared at equal budget on ETTh1 M, horizon 96.

For each brain (``tpe``, ``random``; ``hybrid`` and ``llm`` only when an LLM endpoint is
configured), ``--sessions`` independent searches of ``--trials`` trials each run through
the product (``run_nas_optimization``: the brain, the session loop, the gate, pruning and
the real trainer subprocess), each in its own workspace with its own study seed. The task
and the search space are in ``search_task.py``. Then each session's incumbent (the config
the gate accepted last) is retrained from its ``config_used.py`` with ``--eval-seeds``
through the trainer subprocess, and its test MSE is averaged over those seeds.

Reported: best val MSE against trials (mean ± std over sessions), the incumbents' 3-seed
test MSE next to the published Informer result (0.865) and the state of the art (0.375,
TimeMixer at look-back 96), training time, and the compute pruning saved (epochs run
against the epochs the same trials would take without pruning; a pruned trial counts its
full ``max_epochs``, an upper bound since early stopping might have ended it sooner).
Writes ``results.json`` and ``search_curves.png`` into ``--out``; prints a markdown
summary. Rerunning the same command continues where it stopped (workspaces resume,
finished re-evaluations are reused).

Usage::

    python benchmarks/search.py --out bench-search                   # 5 x 20 trials per brain
    python benchmarks/search.py --brains tpe --sessions 3 --trials 20 --out bench-search
    python benchmarks/search.py --sessions 1 --trials 2 --max-train-windows 64 \\
        --max-epochs 1 --out /tmp/search-smoke     # smoke test: 10 trainings, 1 to 4 min

Run it alone on the machine: a second job on the same cores makes the times meaningless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from search_report import best_curve, brain_summary, markdown, mean_std, plot_curves, show
from search_task import (
    GOAL_TEST_MSE,
    PUBLISHED_INFORMER_TEST_MSE,
    SOTA_TEST_MSE,
    TASK_NAME,
    TRIAL_EVAL_WINDOWS,
    TRIAL_TRAIN_WINDOWS,
    create_task_workspace,
    task_config,
)

from informer_nas.errors import ConfigError
from informer_nas.informer.config import InformerConfig, read_config_literal
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.config_file import render_config
from informer_nas.nas_system.process_signals import terminate_with_parent
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger("search")

OFFLINE_BRAINS = ("tpe", "random")
LLM_BRAINS = ("hybrid", "llm")
SESSION_SEED_STRIDE = 10_000  # sampler seeds are base + trial number: keep sessions apart
REEVAL_FILE = "reeval.json"  # one re-evaluation seed's outcome, beside the trainer's files


def session_seed(index: int) -> int:
    """The study (and training) base seed of session ``index``; brains share it."""
    return SESSION_SEED_STRIDE * (index + 1)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file ({} when missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def window_caps(args: argparse.Namespace) -> tuple[int | None, int | None, int | None]:
    """(train, scored in trials, scored in the re-evaluation) windows; None: all.

    A reduced run (``--max-train-windows N``) also scores N windows unless
    ``--max-eval-windows`` says otherwise; ``--reeval-windows`` sets the re-evaluation's
    own; 0 means all windows.
    """
    def cap(value: int) -> int | None:
        return value or None

    train: int | None = TRIAL_TRAIN_WINDOWS
    trial_eval: int | None = TRIAL_EVAL_WINDOWS
    reeval: int | None = None
    if args.max_train_windows is not None:
        train = trial_eval = reeval = cap(args.max_train_windows)
    if args.max_eval_windows is not None:
        trial_eval = reeval = cap(args.max_eval_windows)
    if args.reeval_windows is not None:
        reeval = cap(args.reeval_windows)
    return train, trial_eval, reeval


def session_config(args: argparse.Namespace) -> InformerConfig:
    train, trial_eval, _ = window_caps(args)
    return task_config(args.max_epochs, train, trial_eval, args.threads)


def reeval_config(workspace: Workspace, config_used: Path, target: Path,
                  eval_windows: int | None, train_windows: int | None | str,
                  max_epochs: int | None = None) -> Path:
    """``config_used.py`` with the re-evaluation's caps, rendered into ``target``.

    ``train_windows`` "same" keeps the trials' training cap (the search's fidelity);
    ``max_epochs`` None keeps the trials' epoch budget (early stopping still applies).
    """
    data = read_config_literal(config_used)
    data["training"]["max_eval_windows"] = eval_windows
    if train_windows != "same":
        data["training"]["max_train_windows"] = train_windows
    if max_epochs is not None:
        data["training"]["max_epochs"] = max_epochs
    config = InformerConfig.model_validate(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    space = workspace.search_space(load_state(workspace.paths))
    atomic_write_text(target, render_config(config, space))
    return target


def run_facts(workspace: Workspace, run: RunRecord) -> dict[str, Any]:
    """One trial: outcome, epochs run, epochs a full run takes, seconds per epoch."""
    run_dir = workspace.paths.run_dir(run.run_id)
    metrics = read_json(run_dir / "metrics.json")
    epochs = read_json(run_dir / "history.json").get("epochs", [])
    try:
        max_epochs = int(read_config_literal(run_dir / "config_used.py")["training"]
                         ["max_epochs"])
    except (ConfigError, KeyError, TypeError, ValueError):  # failed before writing it
        max_epochs = int(workspace.config().training.max_epochs)
    epochs_run = metrics.get("epochs_run") or len(epochs)
    epoch_seconds = [e.get("seconds") or 0.0 for e in epochs if isinstance(e, dict)]
    per_epoch = statistics.fmean(epoch_seconds) if epoch_seconds else 0.0
    pruned = run.status is RunStatus.PRUNED
    saved = max(max_epochs - epochs_run, 0) if pruned else 0
    return {"run_id": run.run_id, "iteration": run.iteration, "status": run.status.value,
            "accepted": run.accepted, "val_mse": run.val_mse, "test_mse": run.test_mse,
            "seconds": run.seconds, "epochs_run": epochs_run, "max_epochs": max_epochs,
            "pruned_epochs_saved": saved, "pruned_seconds_saved": saved * per_epoch}


def reevaluate(workspace: Workspace, run_dir: Path, out_dir: Path,
               args: argparse.Namespace) -> list[dict[str, Any]]:
    """Retrain ``run_dir/config_used.py`` with each eval seed (reusing finished ones)."""
    from informer_nas.nas_system.local_executor import LocalSubprocessExecutor

    train_windows = ("same" if args.reeval_train_windows is None
                     else args.reeval_train_windows or None)
    config = reeval_config(workspace, run_dir / "config_used.py", out_dir / "config.py",
                           window_caps(args)[2], train_windows, args.reeval_max_epochs)
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    executor, results = LocalSubprocessExecutor(), []
    seeds: list[int] = args.eval_seeds
    for seed in seeds:
        exit_if_orphaned()
        seed_dir = out_dir / f"seed_{seed}"
        result = read_json(seed_dir / REEVAL_FILE)
        if result.get("status") != "ok" or result.get("config_sha256") != digest:
            logger.info("re-evaluating %s with seed %d", run_dir.name, seed)
            seed_dir.mkdir(parents=True, exist_ok=True)
            outcome = executor.run(config, seed_dir, seed, args.timeout)
            metrics = outcome.metrics
            result = {"seed": seed, "status": outcome.status.value, "reason": outcome.reason,
                      "val_mse": metrics.get("val_mse"), "test_mse": metrics.get("test_mse"),
                      "test_mae": metrics.get("test_mae"), "seconds": outcome.seconds,
                      "config_sha256": digest}
            atomic_write_text(seed_dir / REEVAL_FILE, json.dumps(result))
        results.append(result)
    return results


def progress_logger(brain: str, index: int, trials: int) -> Any:
    def observe(event: dict[str, Any]) -> None:
        if event.get("event") == "verdict":
            logger.info("%s session %d trial %s/%d: %s val_mse %s, %s", brain, index,
                        event.get("iteration"), trials, event.get("run_id"),
                        show(event.get("val_mse")), "accepted" if event.get("accepted")
                        else "rejected")
        elif event.get("event") == "planning_failure":
            logger.warning("%s session %d: planning failure: %s", brain, index,
                           event.get("reason"))

    return observe


def exit_if_orphaned() -> None:
    """End a pool worker whose parent died (after ``terminate_with_parent``'s SIGTERM).

    The SIGTERM stops only the session or training in progress (which saves its state);
    without this check the worker would go on to the sessions already queued for it.
    """
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os._exit(1)  # what finished is saved; nobody is left to take the result


def run_session(brain: str, index: int, args: argparse.Namespace) -> dict[str, Any]:
    """One search session (created or resumed), then its incumbent's re-evaluation."""
    from informer_nas.api import run_nas_optimization

    exit_if_orphaned()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = session_config(args)
    session_dir = Path(args.out) / brain / f"session_{index}"
    root = session_dir / "workspace"
    if (root / "agent_state.json").is_file():
        check_same_settings(Workspace.open(root), config)
    else:
        create_task_workspace(root, config)
    started = time.perf_counter()
    result = run_nas_optimization(
        root, iters=args.trials, planner=brain, seed=session_seed(index),
        timeout=args.timeout, prune=not args.no_prune, quiet=True,
        observer=progress_logger(brain, index, args.trials))
    search_wall = time.perf_counter() - started  # this invocation only; see search_span
    exit_if_orphaned()
    workspace = Workspace.open(root)
    state = load_state(workspace.paths)
    runs = [run_facts(workspace, r) for r in state.runs if r.verdict is not None]
    incumbent = state.incumbent_run_id
    reeval = reevaluate(workspace, workspace.paths.run_dir(incumbent),
                        session_dir / "reeval" / incumbent, args) if incumbent else []
    tests = [r["test_mse"] for r in reeval if r["status"] == "ok" and r["test_mse"] is not None]
    incumbent_config = read_config_literal(workspace.paths.config) if incumbent else None
    return {
        "brain": brain, "index": index, "seed": session_seed(index), "workspace": str(root),
        "stopped_by": result.stopped_by, "search_wall_seconds": search_span(state.runs),
        "this_invocation_seconds": search_wall, "runs": runs,
        "curve": best_curve(runs, args.trials), "incumbent_run_id": incumbent,
        "incumbent_config": incumbent_config, "reeval": reeval,
        "reeval_test_mse": mean_std(tests),
        "reeval_seconds": sum(r["seconds"] or 0.0 for r in reeval),
    }


def search_span(runs: list[RunRecord]) -> float:
    """Seconds from the first run's start to the last run's end (across resumes)."""
    from datetime import datetime

    starts = [datetime.fromisoformat(r.started_at) for r in runs if r.started_at]
    ends = [datetime.fromisoformat(r.finished_at) for r in runs if r.finished_at]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def check_same_settings(workspace: Workspace, config: InformerConfig) -> None:
    """A resumed workspace must have been made with this run's epochs and caps."""
    made, wanted = workspace.config().training, config.training
    keys = ("max_epochs", "max_train_windows", "max_eval_windows")
    differing = [k for k in keys if getattr(made, k) != getattr(wanted, k)]
    if differing:
        raise SystemExit(f"{workspace.root} was made with other settings ("
                         + ", ".join(f"{k} {getattr(made, k)} != {getattr(wanted, k)}"
                                     for k in differing)
                         + "); rerun with the same options or pass another --out")


def chosen_brains(text: str | None) -> list[str]:
    """``--brains`` (default: tpe, random, plus hybrid and llm when an endpoint is set)."""
    from informer_nas.agents.brains.llm_settings import llm_configured

    configured = llm_configured()
    if text is None:
        return [*OFFLINE_BRAINS, *(LLM_BRAINS if configured else ())]
    brains = [b.strip() for b in text.split(",") if b.strip()]
    for brain in brains:
        if brain not in (*OFFLINE_BRAINS, *LLM_BRAINS):
            raise SystemExit(f"unknown brain {brain!r}; choose from tpe, random, hybrid, llm")
        if brain in LLM_BRAINS and not configured:
            raise SystemExit(f"brain {brain!r} needs an LLM endpoint (NAS_LLM_BASE_URL or "
                             "OPENAI_API_KEY); drop it from --brains or configure one")
    return brains


def run_all(brains: list[str], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every (brain, session), sequentially or on ``--jobs`` worker processes."""
    pairs = [(brain, index) for brain in brains for index in range(args.sessions)]
    if args.jobs == 1:
        done = [run_session(brain, index, args) for brain, index in pairs]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context,
                                 initializer=terminate_with_parent) as pool:
            done = list(pool.map(run_session, *zip(*pairs, strict=True),
                                 [args] * len(pairs)))
    return {brain: [s for s in done if s["brain"] == brain] for brain in brains}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brains", default=None, help="comma-separated: tpe,random,hybrid,llm")
    parser.add_argument("--sessions", type=int, default=5, help="sessions per brain")
    parser.add_argument("--trials", type=int, default=20, help="trials per session")
    parser.add_argument("--out", default="bench-search", help="output directory")
    parser.add_argument("--jobs", type=int, default=1, help="sessions run in parallel")
    parser.add_argument("--max-epochs", type=int, default=6, help="epochs per training")
    parser.add_argument("--max-train-windows", type=int, default=None,
                        help=f"reduced run: train on and score this many windows (0: all; "
                        f"default {TRIAL_TRAIN_WINDOWS} trained, {TRIAL_EVAL_WINDOWS} scored "
                        "in trials, all in the re-evaluation)")
    parser.add_argument("--max-eval-windows", type=int, default=None,
                        help="windows scored per split, trials and re-evaluation (0: all)")
    parser.add_argument("--reeval-windows", type=int, default=None,
                        help="windows scored per split in the re-evaluation (0: all; default "
                        "as the trials when a cap is given, else all)")
    parser.add_argument("--reeval-train-windows", type=int, default=None,
                        help="windows the re-evaluation trains on (0: all; default: the "
                        "trials' cap, i.e. the search's fidelity)")
    parser.add_argument("--reeval-max-epochs", type=int, default=None,
                        help="epoch budget of the re-evaluation (default: the trials'; early "
                        "stopping still applies)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per training")
    parser.add_argument("--no-prune", action="store_true", help="turn pruning off")
    parser.add_argument("--eval-seeds", default="1,2,3", help="seeds of the re-evaluation")
    args = parser.parse_args(argv)
    args.eval_seeds = [int(seed) for seed in args.eval_seeds.split(",") if seed.strip()]
    for name in ("sessions", "trials", "jobs", "max_epochs", "threads", "reeval_max_epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    brains = chosen_brains(args.brains)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sessions = run_all(brains, args)
    results = {
        "task": TASK_NAME, "config": session_config(args).to_dict(), "args": vars(args),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "references": {"informer_published": PUBLISHED_INFORMER_TEST_MSE,
                       "sota_timemixer": SOTA_TEST_MSE, "goal": GOAL_TEST_MSE},
        "wall_seconds": time.perf_counter() - started,
        "brains": {b: brain_summary(s, args.trials) for b, s in sessions.items()},
        "sessions": sessions,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=str))
    plot_curves(results, out / "search_curves.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
