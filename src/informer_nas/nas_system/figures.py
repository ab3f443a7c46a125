"""The report's figures: ``progress.png`` (val MSE per iteration, how each run was judged,
the incumbent's line) and a run's learning curve. matplotlib is imported lazily and used
through its object-oriented API (no pyplot, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from informer_nas.nas_system.atomic import atomic_write_bytes
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    IncumbentEvidence,
    compared_values,
)
from informer_nas.nas_system.records import RunStatus
from informer_nas.nas_system.status import run_seed_values

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def integer_ticks(axes: Axes) -> None:
    """Whole-number ticks on the x axis (iterations, epochs), even for a single point.

    ``MaxNLocator(integer=True)`` alone falls back to fractional ticks (0.945 ... 1.05)
    when fewer than two integers are in view, as with one run or one epoch.
    """
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _new_figure() -> tuple[Figure, Axes]:
    # The object-oriented API: no pyplot state, no GUI backend, safe in any thread.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.subplots()
    integer_ticks(axes)  # iterations and epochs
    return figure, axes


# How each run is drawn in progress.png: label -> (colour, marker, hollow). A run with a val
# MSE is accepted or rejected by its verdict; one never judged (interrupted, or being
# judged while a session runs) is neither. A run without a val MSE is a vertical line.
PROGRESS_STYLES: dict[str, tuple[str, str, bool]] = {
    "accepted": ("tab:green", "o", False),
    "rejected": ("tab:red", "x", False),
    "not judged": ("tab:grey", "o", True),
}
FAILED = "failed"
INTERRUPTED = "interrupted"


def progress_category(run: dict[str, Any]) -> str:
    """``accepted``, ``rejected``, ``not judged``, ``failed`` (judged without a val MSE) or
    ``interrupted`` (no val MSE and never judged: not drawn; its iteration was redone)."""
    if run["val_mse"] is None:
        return FAILED if run.get("verdict") is not None else INTERRUPTED
    if run["accepted"] is None:
        return "not judged"
    return "accepted" if run["accepted"] else "rejected"


def plot_progress(runs: list[dict[str, Any]], baseline_mse: float | None = None) -> Figure:
    """Val MSE per iteration: accepted (green), rejected (red), not judged (grey, hollow),
    failed (grey dotted line), the incumbent's val MSE (see ``incumbent_steps``), and the
    linear baseline's val MSE (dashed) when given.
    """
    figure, axes = _new_figure()
    if baseline_mse is not None:
        axes.axhline(baseline_mse, color="tab:purple", linestyle="--",
                     label="linear baseline (RLinear)")
    for label, (color, marker, hollow) in PROGRESS_STYLES.items():
        chosen = [run for run in runs if progress_category(run) == label]
        if chosen:
            xs, ys = [r["iteration"] for r in chosen], [r["val_mse"] for r in chosen]
            if hollow:
                axes.scatter(xs, ys, label=label, marker=marker, zorder=3,
                             facecolors="none", edgecolors=color)
            else:
                axes.scatter(xs, ys, label=label, marker=marker, zorder=3, color=color)
    best_x, best_y, by_seeds = incumbent_steps(runs)
    if best_x:
        label = ("incumbent (mean over the seeds the gate compared)" if by_seeds
                 else "incumbent (best so far)")
        axes.step(best_x, best_y, where="post", color="tab:blue", label=label)
    failed = [run["iteration"] for run in runs if progress_category(run) == FAILED]
    for index, iteration in enumerate(failed):
        axes.axvline(iteration, color="grey", linestyle=":", label=FAILED if index == 0 else None)
    axes.set_xlabel("iteration")
    axes.set_ylabel("validation MSE")
    axes.set_title("Search progress")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best")
    else:  # (matplotlib warns about a legend of nothing)
        axes.text(0.5, 0.5, "no run with a validation MSE yet" if runs else "no runs yet",
                  ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    return figure


def _evidence(run: dict[str, Any]) -> CandidateEvidence:
    """The gate's view of a run of ``workspace_status`` (its seeds included)."""
    seeds, failed = run_seed_values(run)
    return CandidateEvidence(RunStatus(run["status"]), run["val_mse"], seeds, failed)


def incumbent_steps(runs: list[dict[str, Any]]) -> tuple[list[int], list[float], bool]:
    """The incumbent's val MSE after each iteration, as the gate compared it.

    The accepted runs are the chain of incumbents, each compared with the one before.
    Without confirmation seeds, a run's value is its val MSE. With them
    (``--confirm-seeds``), the gate compared the means over the seeds both runs share
    (the session's confirmation seeds), not the main seeds: the value of an accepted run
    is its mean as it was accepted, and that of the first incumbent its mean as the
    next one was compared with it. So the line drops at each accept the rules decided;
    it can only rise where the evaluator accepted a borderline run a little worse.

    Returns:
        The iterations, the values (the last one repeated at the last iteration) and
        whether any value is a mean over seeds.
    """
    chain = [run for run in runs if run["accepted"] is True and run["val_mse"] is not None]
    if not chain:
        return [], [], False
    values = [float(chain[0]["val_mse"])]
    by_seeds = False
    for previous, run in zip(chain, chain[1:], strict=False):
        base = _evidence(previous)
        incumbent = IncumbentEvidence(previous["run_id"], float(previous["val_mse"]),
                                      base.seed_val_mse)
        candidate, compared_with, seeds = compared_values(_evidence(run), incumbent)
        if previous is chain[0]:
            values[0] = compared_with
        values.append(candidate)
        by_seeds = by_seeds or bool(seeds)
    xs = [run["iteration"] for run in chain] + [max(run["iteration"] for run in runs)]
    return xs, [*values, values[-1]], by_seeds


def plot_learning_curve(epochs: list[dict[str, Any]], title: str) -> Figure:
    """Train loss, val loss and val / test MSE per epoch from a ``history.json``."""
    figure, axes = _new_figure()
    x = [row["epoch"] for row in epochs]
    for key, style in (("train_loss", "-"), ("val_loss", "--"), ("val_mse", "-o"),
                       ("test_mse", ":s")):
        values = [row.get(key) for row in epochs]
        if any(value is not None for value in values):
            axes.plot(x, [float("nan") if v is None else v for v in values], style, label=key)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss / MSE")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, target: Path) -> None:
    """Write ``figure`` as a PNG, atomically."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(target, buffer.getvalue())
