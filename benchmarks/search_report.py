"""The summary of ``search.py``: aggregates over sessions, ``search_curves.png``, markdown.

Pure functions on the per-session dicts that ``search.run_session`` returns.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from search_task import GOAL_TEST_MSE, PUBLISHED_INFORMER_TEST_MSE, SOTA_TEST_MSE


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (0 for one value; None for none)."""
    if not values:
        return None, None
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def show(mean: float | None, spread: float | None = None, digits: int = 4) -> str:
    """``0.4321 ± 0.0123`` (or ``-``)."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def best_curve(runs: list[dict[str, Any]], trials: int) -> list[float | None]:
    """Best val MSE of an ok run among trials 1..t, for t = 1..trials."""
    by_iteration = {r["iteration"]: r for r in runs}
    curve: list[float | None] = []
    best: float | None = None
    for iteration in range(1, trials + 1):
        run = by_iteration.get(iteration)
        value = run["val_mse"] if run and run["status"] == "ok" else None
        if value is not None and math.isfinite(value) and (best is None or value < best):
            best = value
        curve.append(best)
    return curve


def pruning_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Epochs run against the epochs a run without pruning would take (an upper bound)."""
    epochs_run = sum(r["epochs_run"] for r in runs)
    saved = sum(r["pruned_epochs_saved"] for r in runs)
    return {"trials": len(runs), "pruned": sum(r["status"] == "pruned" for r in runs),
            "epochs_run": epochs_run, "epochs_without_pruning": epochs_run + saved,
            "epochs_saved": saved, "fraction_saved": saved / (epochs_run + saved) if saved
            else 0.0, "seconds_saved_estimate": sum(r["pruned_seconds_saved"] for r in runs)}


def brain_summary(sessions: list[dict[str, Any]], trials: int) -> dict[str, Any]:
    """Aggregates over a brain's sessions."""
    curve = []
    for t in range(trials):
        values = [s["curve"][t] for s in sessions if s["curve"][t] is not None]
        mean, spread = mean_std(values)
        curve.append({"trial": t + 1, "mean": mean, "std": spread, "sessions": len(values)})
    tests = [s["reeval_test_mse"][0] for s in sessions if s["reeval_test_mse"][0] is not None]
    runs = [r for s in sessions for r in s["runs"]]
    search_seconds = sum(r["seconds"] for r in runs)
    reeval_seconds = sum(s["reeval_seconds"] for s in sessions)
    return {"sessions": len(sessions), "best_val_curve": curve,
            "final_best_val_mse": [curve[-1]["mean"], curve[-1]["std"]] if curve else None,
            "incumbent_test_mse_3seed": list(mean_std(tests)),
            "training_seconds": {"search": search_seconds, "reeval": reeval_seconds,
                                 "total": search_seconds + reeval_seconds},
            "wall_seconds": sum(s["search_wall_seconds"] for s in sessions),
            "pruning": pruning_summary(runs)}


def compute_curve(runs: list[dict[str, Any]]) -> tuple[list[float], list[float | None]]:
    """Cumulative training hours at the end of each run, and the best val MSE by then."""
    hours, best_values, total = [], [], 0.0
    best: float | None = None
    for run in sorted(runs, key=lambda r: r["iteration"]):
        total += run["seconds"] / 3600
        value = run["val_mse"] if run["status"] == "ok" else None
        if value is not None and math.isfinite(value) and (best is None or value < best):
            best = value
        hours.append(total)
        best_values.append(best)
    return hours, best_values


def plot_curves(results: dict[str, Any], path: Path) -> None:
    """``search_curves.png``: best val MSE against trials and against training hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (by_trial, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for brain, summary in results["brains"].items():
        points = [p for p in summary["best_val_curve"] if p["mean"] is not None]
        x = [p["trial"] for p in points]
        mean = [p["mean"] for p in points]
        spread = [p["std"] or 0.0 for p in points]
        line = by_trial.plot(x, mean, marker="o", markersize=3, label=brain)[0]
        by_trial.fill_between(x, [m - s for m, s in zip(mean, spread, strict=True)],
                              [m + s for m, s in zip(mean, spread, strict=True)],
                              color=line.get_color(), alpha=0.2)
        for session in results["sessions"][brain]:
            hours, best = compute_curve(session["runs"])
            by_time.step(hours, best, where="post", color=line.get_color(), alpha=0.6,
                         linewidth=1)
    by_trial.set(xlabel="trials", ylabel="best val MSE so far",
                 title="best val MSE (mean ± std over sessions)")
    by_time.set(xlabel="training hours (cumulative)", ylabel="best val MSE so far",
                title="per session, against compute")
    by_trial.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_trial.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(results: dict[str, Any]) -> str:
    """The summary printed at the end (headline first)."""
    trials = results["args"]["trials"]
    lines = [f"## Search efficiency: ETTh1 M, look-back 96 -> horizon 96, {trials} trials", "",
             f"| brain | sessions | best val MSE at {trials} trials | incumbent test MSE "
             f"({len(results['args']['eval_seeds'])} seeds) | Informer (published) "
             "| SOTA (TimeMixer) | training h | search wall h | trials pruned "
             "| epochs saved by pruning |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for brain, s in results["brains"].items():
        prune, hours = s["pruning"], s["training_seconds"]["total"] / 3600
        lines.append(
            f"| {brain} | {s['sessions']} | {show(*(s['final_best_val_mse'] or [None]))} "
            f"| {show(*s['incumbent_test_mse_3seed'])} | {PUBLISHED_INFORMER_TEST_MSE} "
            f"| {SOTA_TEST_MSE} | {hours:.2f} | {s['wall_seconds'] / 3600:.2f} "
            f"| {prune['pruned']}/{prune['trials']} "
            f"| {prune['epochs_saved']}/{prune['epochs_without_pruning']} "
            f"({100 * prune['fraction_saved']:.0f}%, ~{prune['seconds_saved_estimate'] / 60:.0f}"
            " min) |")
    caps = results["args"]
    trained_on = ("the trials' training windows" if caps.get("reeval_train_windows") is None
                  else f"{caps['reeval_train_windows'] or 'all'} training windows")
    if caps.get("reeval_max_epochs") is not None:
        trained_on += f" for up to {caps['reeval_max_epochs']} epochs"
    lines += ["", f"Goal for the offline brain: test MSE <= {GOAL_TEST_MSE}. Test MSE: the "
              f"session's incumbent retrained on {trained_on} with each eval seed, averaged "
              "over seeds, then mean ± std over sessions. Search wall: first trial's start to "
              "last trial's end, summed over sessions.", "",
              "| brain | trial | best val MSE (mean ± std) | sessions |", "|---|---|---|---|"]
    for brain, s in results["brains"].items():
        for point in s["best_val_curve"]:
            lines.append(f"| {brain} | {point['trial']} | {show(point['mean'], point['std'])} "
                         f"| {point['sessions']} |")
    lines += ["", "| brain | session | seed | incumbent | look-back | revin | linear skip "
              "| attn | d_model | loss | val MSE | test MSE over seeds |", "|---" * 12 + "|"]
    for brain, sessions in results["sessions"].items():
        lines += [incumbent_row(brain, session) for session in sessions]
    machine = results["machine"]
    lines += ["", f"Machine: {machine['platform']}, {machine['cpus']} CPUs; this invocation "
              f"{results['wall_seconds'] / 60:.1f} min; command: `{results['command']}`"]
    return "\n".join(lines)


def incumbent_row(brain: str, session: dict[str, Any]) -> str:
    """One session's incumbent, for the markdown summary."""
    config = session["incumbent_config"] or {"model": {}, "data": {}, "training": {}}
    model, data, training = config["model"], config["data"], config["training"]
    run: dict[str, Any] = next(
        (r for r in session["runs"] if r["run_id"] == session["incumbent_run_id"]), {})
    return (f"| {brain} | {session['index']} | {session['seed']} "
            f"| {session['incumbent_run_id'] or '-'} | {data.get('seq_len', '-')} "
            f"| {model.get('revin', '-')} | {model.get('linear_skip', '-')} "
            f"| {model.get('attn', '-')} "
            f"| {model.get('d_model', '-')} | {training.get('criterion_class', '-')} "
            f"| {show(run.get('val_mse'))} "
            f"| {show(*session['reeval_test_mse'])} |")
