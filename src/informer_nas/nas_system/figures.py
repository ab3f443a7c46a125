"""The report's figures: ``progress.png`` (val MSE per iteration, how each run was judged,
the incumbent's line) and a run's learning curve. matplotlib is imported lazily and used
through its object-oriented API (no pyplot, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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


def _new_figure(layout: Literal["constrained"] | None = None) -> tuple[Figure, Axes]:
    # The object-oriented API: no pyplot state, no GUI backend, safe in any thread.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100, layout=layout)
    axes = figure.subplots()
    integer_ticks(axes)  # iterations and epochs
    return figure, axes


# How each run is drawn in progress.png: label -> (colour, marker, hollow). A run with a val
# MSE is accepted or rejected by its verdict; one never judged (interrupted, or being
# judged while a session runs) is neither. A run without a val MSE is a tick on the x axis.
PROGRESS_STYLES: dict[str, tuple[str, str, bool]] = {
    "accepted": ("tab:green", "o", False),
    "rejected": ("tab:red", "x", False),
    "not judged": ("tab:grey", "o", True),
}
FAILED = "failed"
INTERRUPTED = "interrupted"
# Up to this many points are drawn at matplotlib's default size, opaque; beyond it the
# markers of the runs that did not become the incumbent shrink and fade with the square
# root of the count (at 1,000: a quarter of the area, 0.3 opaque), so the incumbent's line
# and the density of the search stay visible instead of a red band.
FEW_POINTS = 50
DEFAULT_AREA = 36.0  # points^2: matplotlib's lines.markersize (6) squared
OUTLIER_FENCE = 3.0  # Tukey's far-out fence: above Q3 + 3 IQR a value is off the scale
MIN_POINTS_TO_CLIP = 8  # fewer values are all shown, however far apart


def progress_category(run: dict[str, Any]) -> str:
    """``accepted``, ``rejected``, ``not judged``, ``failed`` (judged without a val MSE) or
    ``interrupted`` (no val MSE and never judged: not drawn; its iteration was redone)."""
    if run["val_mse"] is None:
        return FAILED if run.get("verdict") is not None else INTERRUPTED
    if run["accepted"] is None:
        return "not judged"
    return "accepted" if run["accepted"] else "rejected"


def marker_style(points: int) -> tuple[float, float]:
    """(area in points^2, alpha) of the markers of runs not accepted, for ``points`` drawn."""
    density = min(1.0, (FEW_POINTS / max(1, points)) ** 0.5)
    return max(6.0, DEFAULT_AREA * density), max(0.3, density)


def plot_progress(runs: list[dict[str, Any]], baseline_mse: float | None = None) -> Figure:
    """Val MSE per iteration: accepted (green), rejected (red), not judged (grey, hollow),
    failed (grey ticks on the x axis), the incumbent's val MSE (a thick line above the
    markers, see ``incumbent_steps``), and the linear baseline's val MSE (dashed) when given.

    Markers shrink and fade past ``FEW_POINTS`` runs; values far above the rest (Tukey's
    far-out fence) are left off the scale and marked by a triangle on the top edge, so one
    diverging run does not flatten the others.
    """
    figure, axes = _new_figure(layout="constrained")
    if baseline_mse is not None:
        axes.axhline(baseline_mse, color="tab:purple", linestyle="--", zorder=2,
                     label="linear baseline (RLinear)")
    _draw_runs(axes, runs)
    best_x, best_y, by_seeds = incumbent_steps(runs)
    if best_x:
        label = ("incumbent (mean over the seeds the gate compared)" if by_seeds
                 else "incumbent (best so far)")
        axes.step(best_x, best_y, where="post", color="tab:blue", linewidth=2.2, zorder=4,
                  label=label)
    references = best_y + ([] if baseline_mse is None else [baseline_mse])
    _clip_far_outliers(axes, runs, references)
    failed = [run["iteration"] for run in runs if progress_category(run) == FAILED]
    if failed:  # a tick each along the x axis: at 1,000 runs, full-height lines hid the rest
        low, high = axes.get_ylim()
        axes.set_ylim(low - 0.06 * (high - low), high)  # room for them below the lowest run
        axes.vlines(failed, 0, 0.05, transform=axes.get_xaxis_transform(), colors="dimgrey",
                    linewidth=2, zorder=3, label=FAILED)
    _finish_progress_axes(axes, runs)
    return figure


def _draw_runs(axes: Axes, runs: list[dict[str, Any]]) -> None:
    """One scatter per category; the accepted ones stay full-size and opaque."""
    area, alpha = marker_style(sum(1 for run in runs if run["val_mse"] is not None))
    for label, (color, marker, hollow) in PROGRESS_STYLES.items():
        chosen = [run for run in runs if progress_category(run) == label]
        if not chosen:
            continue
        xs, ys = [r["iteration"] for r in chosen], [r["val_mse"] for r in chosen]
        accepted = label == "accepted"
        style: dict[str, Any] = {"facecolors": "none", "edgecolors": color} if hollow \
            else {"color": color}
        axes.scatter(xs, ys, label=label, marker=marker, s=DEFAULT_AREA if accepted else area,
                     alpha=1.0 if accepted else alpha, zorder=5 if accepted else 3, **style)


def _clip_far_outliers(axes: Axes, runs: list[dict[str, Any]], references: list[float]) -> None:
    """Set the y range to the values below the far-out fence and the ``references`` (the
    incumbent's values, the baseline), marking the runs above it on the top edge."""
    import statistics

    values = [float(run["val_mse"]) for run in runs if run["val_mse"] is not None]
    if len(values) < MIN_POINTS_TO_CLIP:
        return
    first, _, third = statistics.quantiles(values, n=4)
    if third <= first:  # most values equal: no spread to measure "far" by
        return
    fence = third + OUTLIER_FENCE * (third - first)
    shown = [value for value in values if value <= fence] + references
    low, high = min(shown), max(shown)
    margin = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
    above = [run for run in runs if run["val_mse"] is not None and run["val_mse"] > high + margin]
    if not above:
        return
    axes.set_ylim(low - margin, high + margin)
    highest = max(float(run["val_mse"]) for run in above)
    axes.scatter([run["iteration"] for run in above], [0.985] * len(above), marker="^",
                 color=[PROGRESS_STYLES[progress_category(run)][0] for run in above],
                 s=DEFAULT_AREA, clip_on=False, zorder=5, transform=axes.get_xaxis_transform(),
                 label=f"{len(above)} {'run' if len(above) == 1 else 'runs'} above the scale "
                       f"(highest {highest:.3g})")


def _finish_progress_axes(axes: Axes, runs: list[dict[str, Any]]) -> None:
    axes.set_xlabel("iteration")
    axes.set_ylabel("validation MSE")
    axes.set_title("Search progress")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if handles:  # below the axes: inside, with hundreds of runs, it covered some of them
        axes.figure.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    else:  # (matplotlib warns about a legend of nothing)
        axes.text(0.5, 0.5, "no run with a validation MSE yet" if runs else "no runs yet",
                  ha="center", va="center", transform=axes.transAxes)


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
