"""The report's figures, checked through the functions that build them (not pixels):
whole-number ticks, how each run is drawn, and the incumbent's line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from matplotlib.colors import to_rgba

from informer_nas.nas_system import figures
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    GateThresholds,
    IncumbentEvidence,
    check_improvement,
)
from informer_nas.nas_system.records import RunRecord, RunStatus, SeedResult
from informer_nas.nas_system.status import run_summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure


def run(iteration: int, val_mse: float | None, accepted: bool | None,
        status: RunStatus = RunStatus.OK, seeds: dict[int, float] | None = None,
        seed: int | None = None) -> dict[str, Any]:
    """A run as ``workspace_status`` lists it (built from a real record)."""
    run_id = f"run_{iteration - 1:04d}"
    record = RunRecord(
        run_id=run_id, iteration=iteration, status=status, val_mse=val_mse,
        accepted=accepted, verdict=None if accepted is None else
        ("accept" if accepted else "reject"), seed=seed if seed is not None else 100 + iteration,
        seeds=[SeedResult(seed=s, status=RunStatus.OK, val_mse=v,
                          run_dir=f"runs/{run_id}/seed_{s}") for s, v in (seeds or {}).items()],
    )
    return run_summary(record)


def visible_ticks(axes: Axes) -> list[float]:
    low, high = axes.get_xlim()
    return [float(t) for t in axes.get_xticks() if low - 1e-9 <= t <= high + 1e-9]


def assert_whole_ticks(figure: Figure) -> None:
    axes = figure.axes[0]
    ticks = visible_ticks(axes)
    assert ticks, "no tick in view"
    assert all(t == int(t) for t in ticks), ticks


@pytest.mark.parametrize("count", [1, 2, 3, 40], ids=lambda n: f"{n}-runs")
def test_progress_ticks_are_whole_iterations(count: int) -> None:
    runs = [run(i, 1.0 - 0.001 * i, True) for i in range(1, count + 1)]
    assert_whole_ticks(figures.plot_progress(runs))


def test_progress_ticks_of_one_failed_run_are_whole() -> None:
    assert_whole_ticks(figures.plot_progress([run(1, None, False, RunStatus.CRASHED)]))


@pytest.mark.parametrize("count", [1, 3, 30], ids=lambda n: f"{n}-epochs")
def test_incumbent_curve_ticks_are_whole_epochs(count: int) -> None:
    epochs = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_mse": 1.1 / e}
              for e in range(1, count + 1)]
    assert_whole_ticks(figures.plot_learning_curve(epochs, "t"))


def scatters(figure: Figure) -> dict[str, PathCollection]:
    """The scatter collections of the progress figure by their legend label."""
    from matplotlib.collections import PathCollection

    return {str(c.get_label()): c for c in figure.axes[0].collections
            if isinstance(c, PathCollection)}


def failed_iterations(figure: Figure) -> list[float]:
    """The iterations marked failed (no val MSE): a tick each on the x axis."""
    from matplotlib.collections import LineCollection

    marks = [c for c in figure.axes[0].collections
             if isinstance(c, LineCollection) and c.get_label() == figures.FAILED]
    return [float(segment[0][0]) for mark in marks for segment in mark.get_segments()]


def legend_labels(figure: Figure) -> list[str]:
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def test_a_run_never_judged_is_not_drawn_as_rejected() -> None:
    """An interrupted run that has a val MSE but no verdict is 'not judged': grey, hollow."""
    runs = [run(1, 1.0, True), run(2, 1.2, False),
            run(3, 0.9, None, RunStatus.INTERRUPTED), run(4, None, False, RunStatus.CRASHED),
            run(5, None, None, RunStatus.INTERRUPTED)]  # killed, its iteration redone
    assert [figures.progress_category(r) for r in runs] == [
        "accepted", "rejected", "not judged", "failed", "interrupted"]
    assert failed_iterations(figures.plot_progress(runs)) == [4]  # not 5: never judged
    drawn = scatters(figures.plot_progress(runs))
    assert set(drawn) == {"accepted", "rejected", "not judged"}
    assert [list(p) for p in drawn["rejected"].get_offsets()] == [[2, 1.2]]
    assert [list(p) for p in drawn["not judged"].get_offsets()] == [[3, 0.9]]
    unjudged = drawn["not judged"]
    assert not any(face[3] > 0 for face in unjudged.get_facecolor())  # hollow
    assert tuple(unjudged.get_edgecolor()[0]) == to_rgba("tab:grey")
    assert tuple(drawn["rejected"].get_facecolor()[0]) == to_rgba("tab:red")
    assert "not judged" in legend_labels(figures.plot_progress(runs))


def test_runs_without_a_val_mse_draw_no_empty_legend() -> None:
    # a run interrupted before its result: matplotlib warned "No artists with labels" and
    # drew an empty legend box
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = figures.plot_progress([run(1, None, None, RunStatus.INTERRUPTED)])
    axes = figure.axes[0]
    assert axes.get_legend() is None and not figure.legends
    assert [text.get_text() for text in axes.texts] == ["no run with a validation MSE yet"]


def test_only_unjudged_runs_draw_no_rejected_marker() -> None:
    drawn = scatters(figures.plot_progress([run(1, 0.9, None, RunStatus.INTERRUPTED)]))
    assert set(drawn) == {"not judged"}


def incumbent_line(figure: Figure) -> tuple[list[float], list[float], str]:
    lines = [line for line in figure.axes[0].get_lines()
             if str(line.get_label()).startswith("incumbent")]
    assert len(lines) == 1
    line = lines[0]
    return ([float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()],
            str(line.get_label()))


def test_incumbent_line_without_seeds_is_the_accepted_val_mse() -> None:
    runs = [run(1, 1.0, True), run(2, 1.1, False), run(3, 0.8, True), run(4, 0.85, False)]
    xs, ys, label = incumbent_line(figures.plot_progress(runs))
    assert (xs, ys, label) == ([1, 3, 4], [1.0, 0.8, 0.8], "incumbent (best so far)")


def test_incumbent_line_follows_the_seed_means_the_gate_compared() -> None:
    """--confirm-seeds: the candidate's main seed is 0.4 % worse than the incumbent's
    (borderline, so both get confirmation seeds 11 and 12), yet the means over those seeds
    accept it. The line must follow the gate's means and drop, not rise with the main seeds.
    """
    baseline = run(1, 1.000, True, seeds={11: 1.20, 12: 1.22})
    candidate = run(2, 1.004, True, seeds={11: 1.10, 12: 1.12})
    rejected = run(3, 0.95, False, seeds={11: 1.30, 12: 1.31})
    evidence = CandidateEvidence(RunStatus.OK, 1.004, {102: 1.004, 11: 1.10, 12: 1.12})
    verdict = check_improvement(
        evidence, IncumbentEvidence("run_0000", 1.0, {101: 1.0, 11: 1.20, 12: 1.22}),
        GateThresholds())
    assert verdict.outcome == "accept" and verdict.compared_seeds == (11, 12)

    xs, ys, label = incumbent_line(figures.plot_progress([baseline, candidate, rejected]))
    assert xs == [1, 2, 3]
    assert ys == pytest.approx([1.21, 1.11, 1.11])
    assert all(later <= earlier for earlier, later in zip(ys, ys[1:], strict=False))
    assert "seeds" in label


def long_session(count: int) -> list[dict[str, Any]]:
    """``count`` runs: an accept every 40th (the line falls), a failure every 50th, one run
    that diverged far above the rest at iteration 310, rejected runs spread above the line."""
    runs, best = [], 1.0
    for iteration in range(1, count + 1):
        if iteration % 50 == 0:
            runs.append(run(iteration, None, False, RunStatus.CRASHED))
        elif iteration == 310:
            runs.append(run(iteration, 50.0, False))
        elif iteration % 40 == 1:
            best *= 0.98
            runs.append(run(iteration, best, True))
        else:
            runs.append(run(iteration, best * (1.05 + (iteration * 37 % 100) / 200), False))
    return runs


def test_progress_of_a_thousand_runs_keeps_the_incumbent_line_readable() -> None:
    """At 1,000 iterations the red crosses were one band over the incumbent's line, 20
    full-height failure lines crossed it, one diverged run flattened the rest and the
    legend sat on the data."""
    runs = long_session(1000)
    figure = figures.plot_progress(runs, baseline_mse=1.1)
    axes, drawn = figure.axes[0], scatters(figure)
    rejected, accepted = drawn["rejected"], drawn["accepted"]
    assert max(rejected.get_sizes()) < figures.DEFAULT_AREA / 2 and rejected.get_alpha() <= 0.5
    assert list(accepted.get_sizes()) == [figures.DEFAULT_AREA]
    assert accepted.get_alpha() in (None, 1.0)
    line = next(line for line in axes.get_lines() if str(line.get_label()).startswith("incumb"))
    assert line.get_linewidth() >= 2 and line.get_zorder() > rejected.get_zorder()
    # the failures: ticks on the x axis, no line across the plot
    assert failed_iterations(figure) == [float(i) for i in range(50, 1001, 50)]
    assert [str(line.get_label()) for line in axes.get_lines()] == [
        "linear baseline (RLinear)", "incumbent (best so far)"]
    # the diverged run is off the scale, counted and marked on the top edge
    low, high = axes.get_ylim()
    shown = [r["val_mse"] for r in runs if r["val_mse"] is not None and r["val_mse"] < 50]
    assert low <= min(shown) and max(shown) <= high < 5
    assert "1 run above the scale (highest 50)" in legend_labels(figure)
    assert [list(p) for p in drawn["1 run above the scale (highest 50)"].get_offsets()] == [
        [310, 0.985]]
    # the legend is below the axes, not over the runs
    figure.draw_without_rendering()
    (legend,) = figure.legends
    assert legend.get_window_extent().y1 <= axes.get_window_extent().y0


def test_progress_of_three_runs_draws_every_run_full_size() -> None:
    runs = [run(1, 1.0, True), run(2, 1.3, False), run(3, 0.9, True)]
    figure = figures.plot_progress(runs, baseline_mse=0.5)
    drawn = scatters(figure)
    assert set(drawn) == {"accepted", "rejected"}
    for markers in drawn.values():
        assert list(markers.get_sizes()) == [figures.DEFAULT_AREA]
        assert markers.get_alpha() in (None, 1.0)
    low, high = figure.axes[0].get_ylim()
    assert low < 0.5 and high > 1.3  # every run and the baseline in view
    assert legend_labels(figure) == ["linear baseline (RLinear)", "accepted", "rejected",
                                     "incumbent (best so far)"]


def test_a_few_far_apart_values_are_all_shown() -> None:
    # fewer than MIN_POINTS_TO_CLIP values: a diverged run among them is not off the scale
    runs = [run(1, 1.0, True), run(2, 1.1, False), run(3, 40.0, False)]
    figure = figures.plot_progress(runs)
    assert figure.axes[0].get_ylim()[1] > 40
    assert not [label for label in legend_labels(figure) if "above the scale" in label]


def test_an_incumbent_far_above_the_rest_stays_in_view() -> None:
    # the first run is the first incumbent however bad: its line must not leave the scale
    runs = [run(1, 10.0, True)] + [run(i, 1.0 + 0.01 * i, i == 2) for i in range(2, 20)]
    figure = figures.plot_progress(runs)
    assert figure.axes[0].get_ylim()[1] > 10
    assert not [label for label in legend_labels(figure) if "above the scale" in label]
