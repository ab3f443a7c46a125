"""``nas report``: pictures and tables of a workspace, as Markdown and self-contained HTML.

Writes into ``report/``: ``progress.png`` (val MSE per iteration, the incumbent's line,
accepted, rejected and not judged runs marked, the linear baseline's val MSE),
``incumbent_curve.png`` (the incumbent's learning curve, re-plotted from its
``history.json``), ``report.md`` and ``report.html`` (the images embedded as base64 data
URIs, so the one file opens anywhere).
matplotlib is imported lazily and used through its object-oriented API (no pyplot, no
display needed).

The linear baseline (``informer.baseline``: RevIN + one linear map over time) is trained in
process on the incumbent's data section and window caps, in seconds, and kept in
``report/baseline.json`` with the settings it was trained for, so a later report reuses it
until they change.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from informer_nas.errors import ConfigError
from informer_nas.nas_system.atomic import atomic_write_bytes, atomic_write_text
from informer_nas.nas_system.gate import (
    CandidateEvidence,
    IncumbentEvidence,
    compared_values,
)
from informer_nas.nas_system.records import RunStatus
from informer_nas.nas_system.state import AgentState, load_state
from informer_nas.nas_system.status import (
    RUN_COLUMNS,
    format_mse,
    run_seed_values,
    run_table_rows,
    usage_line,
    workspace_status,
)
from informer_nas.plurals import counted

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from informer_nas.informer.baseline import BaselineResult
    from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger(__name__)

PROGRESS_PNG = "progress.png"
CURVE_PNG = "incumbent_curve.png"
BASELINE_JSON = "baseline.json"


def write_report(workspace: Workspace, baseline: bool = True) -> Path:
    """Write the report of a workspace and return the ``report/`` directory.

    Args:
        workspace: an opened workspace (its state is read, never changed).
        baseline: set the linear baseline against the incumbent (trained once, seconds).
    """
    state = load_state(workspace.paths)
    status = workspace_status(workspace, state)
    report_dir: Path = workspace.paths.report
    report_dir.mkdir(parents=True, exist_ok=True)
    comparison = linear_baseline(status, report_dir / BASELINE_JSON, state) if baseline else None
    summary = _summary_lines(status, _baseline_summary(comparison, status))
    images = {PROGRESS_PNG: "Validation MSE per iteration"}
    baseline_mse = None if comparison is None or isinstance(comparison, str) \
        else comparison.val_mse
    _save_figure(plot_progress(status["runs"], baseline_mse), report_dir / PROGRESS_PNG)
    if _write_incumbent_curve(workspace, status, report_dir / CURVE_PNG):
        images[CURVE_PNG] = f"Learning curve of the incumbent {status['incumbent']['run_id']}"
    else:
        (report_dir / CURVE_PNG).unlink(missing_ok=True)
    atomic_write_text(report_dir / "report.md", render_markdown(status, summary, images))
    html_text = render_html(status, summary, images, report_dir)
    atomic_write_text(report_dir / "report.html", html_text)
    logger.info("report written to %s", report_dir)
    return report_dir


# Plots ----------------------------------------------------------------------------------


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


def _write_incumbent_curve(workspace: Workspace, status: dict[str, Any], target: Path) -> bool:
    """Re-plot the incumbent's history.json, else copy its learning_curve.png."""
    incumbent = status["incumbent"]
    if incumbent is None:
        return False
    run_dir = workspace.paths.run_dir(incumbent["run_id"])
    try:
        epochs = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        epochs = None
    if epochs:
        _save_figure(plot_learning_curve(epochs, f"Incumbent {incumbent['run_id']}"), target)
        return True
    if (run_dir / "learning_curve.png").is_file():
        shutil.copyfile(run_dir / "learning_curve.png", target)
        return True
    logger.warning("no history.json or learning_curve.png in %s", run_dir)
    return False


def _save_figure(figure: Figure, target: Path) -> None:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(target, buffer.getvalue())


# The linear baseline ----------------------------------------------------------------------


def linear_baseline(status: dict[str, Any], cache: Path,
                    state: AgentState) -> BaselineResult | str | None:
    """The linear baseline for the incumbent's data and window caps (``status`` of
    ``workspace_status``: its incumbent's config, and whether a session is running), on
    the data file the incumbent was trained on (``state``'s record of it): another file's
    scores would say nothing about the incumbent.

    Reused from ``cache`` when it was trained for the same settings (and the same data
    file, by size and modification time), else trained now and cached. While a session
    holds the workspace, it trains on one thread: two trainings each spreading over every
    core slow each other down many times over (``benchmarks/baseline_beside_training.py``:
    7 s alone, 216 s on two threads beside a training, 12 s on one).

    Returns:
        The baseline's scores; None without an incumbent; a one-line reason when the
        incumbent's config or data cannot be used.
    """
    from informer_nas.informer.baseline import REPORT_MIN_STEPS, baseline_config, train_baseline
    from informer_nas.informer.config import validate_config
    from informer_nas.nas_system.workspace import data_problem

    if status["incumbent"] is None:
        return None
    try:
        incumbent_config = validate_config(status["incumbent"]["config"])
        if data_problem(state, incumbent_config) is not None:
            return ("the data file is not the one the incumbent was trained on (changed, moved "
                    "or unreadable); `nas doctor` says more")
        config = baseline_config(incumbent_config,
                                 num_threads=1 if status["session"]["running"] else None)
        key = _baseline_key(config.to_dict(), REPORT_MIN_STEPS)
        cached = _read_cached_baseline(cache, key)
        if cached is not None:
            logger.info("linear baseline reused from %s (trained for the same data and "
                        "windows): %s", cache, _baseline_scores(cached))
            return cached
        result = train_baseline(config, min_steps=REPORT_MIN_STEPS)
    except (ConfigError, RuntimeError, OSError) as exc:
        logger.warning("no linear baseline: %s", exc)
        return str(exc).splitlines()[0]
    atomic_write_text(cache, json.dumps({"key": key, "result": result.to_dict()}, indent=2))
    data = config.data
    logger.info("linear baseline (RLinear, seq_len %d -> pred_len %d, features %s) trained on "
                "the incumbent's data section in %.1f s, %d epochs: %s; saved to %s",
                data.seq_len, data.pred_len, data.features, result.train_seconds,
                result.epochs_run, _baseline_scores(result), cache)
    return result


def _baseline_scores(result: BaselineResult) -> str:
    return (f"val MSE {format_mse(result.val_mse)}, test MSE {format_mse(result.test_mse)} "
            f"(best epoch {result.best_epoch})")


def _baseline_key(config: dict[str, Any], min_steps: int) -> dict[str, Any]:
    """What the cached baseline was trained for: data, caps, seed, steps, the data file."""
    training = config["training"]
    key = {"data": config["data"], "seed": training["seed"], "min_steps": min_steps,
           "max_train_windows": training["max_train_windows"],
           "max_eval_windows": training["max_eval_windows"]}
    path = config["data"]["path"]
    if path is not None:
        stat = Path(path).stat()
        key["data_file"] = [stat.st_size, stat.st_mtime_ns]
    return key


def _read_cached_baseline(cache: Path, key: dict[str, Any]) -> BaselineResult | None:
    """The cached result when it was trained for ``key`` (None if absent, stale or unreadable)."""
    from informer_nas.informer.baseline import BaselineResult

    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved["key"] == key:
            return BaselineResult.from_dict(saved["result"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _baseline_summary(comparison: BaselineResult | str | None,
                      status: dict[str, Any]) -> str | None:
    """One line setting the baseline against the incumbent (None when not asked for)."""
    if comparison is None:
        return None
    if isinstance(comparison, str):
        return f"Linear baseline: not available ({comparison})"
    line = (f"Linear baseline (RLinear: RevIN + one linear map over time, on the incumbent's "
            f"data and windows): val MSE {format_mse(comparison.val_mse)}, test MSE "
            f"{format_mse(comparison.test_mse)}")
    incumbent_mse = status["incumbent"]["val_mse"]
    if isinstance(incumbent_mse, int | float) and comparison.val_mse > 0:
        change = (incumbent_mse - comparison.val_mse) / comparison.val_mse
        verdict = ("the incumbent is better" if change < 0 else
                   "the search has not beaten the linear map yet")
        line += f"; the incumbent's val MSE is {abs(change):.1%} " \
                f"{'lower' if change < 0 else 'higher'}: {verdict}"
    return line


# Text -----------------------------------------------------------------------------------


def _summary_lines(status: dict[str, Any], baseline_line: str | None) -> list[str]:
    """The report's opening lines: workspace, planner, budget, incumbent, baseline, tokens."""
    budget, total = status["budget"], status["usage"]["total"]
    incumbent = status["incumbent"]
    best = (f"{incumbent['run_id']} (val MSE {format_mse(incumbent['val_mse'])}, "
            f"test MSE {format_mse(incumbent['test_mse'])})") if incumbent else "none yet"
    lines = [
        f"Workspace: {status['workspace']}",
        f"Planner: {status['planner'] or 'not chosen yet (no session has run)'}",
        f"Budget: {budget['iterations_done']} of {counted(budget['max_iterations'], 'iteration')}"
        f", {counted(budget['runs'], 'run')}, {budget['training_seconds']} s of training",
        f"Incumbent: {best}",
    ]
    session = status["session"]
    if session["running"]:
        lines.insert(2, f"Session: running (pid {session['pid']} since {session['since']}); "
                        "this report is a snapshot")
    if baseline_line:
        lines.append(baseline_line)
    lines.append(f"LLM: {usage_line(total)}")
    return lines


def _config_text(status: dict[str, Any]) -> str:
    incumbent = status["incumbent"]
    return json.dumps(incumbent["config"], indent=2) if incumbent else "(no incumbent yet)"


def render_markdown(status: dict[str, Any], summary: list[str], images: dict[str, str]) -> str:
    """report.md: the summary lines, pictures (linked files), table of runs, incumbent config."""
    lines = ["# informer-nas report", ""]
    lines += [f"- {line}" for line in summary] + [""]
    lines += [f"![{caption}]({name})\n" for name, caption in images.items()]
    lines += ["## Runs", "", "| " + " | ".join(RUN_COLUMNS) + " |",
              "|" + "---|" * len(RUN_COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in run_table_rows(status["runs"])]
    lines += ["", "## Incumbent config", "", "```json", _config_text(status), "```", ""]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;width:100%;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%;display:block;margin:1em 0}pre{background:#f6f6f6;padding:1em;"
    "overflow:auto}.accept{color:#187a18;font-weight:bold}.reject{color:#b02020}"
)


def render_html(status: dict[str, Any], summary: list[str], images: dict[str, str],
                report_dir: Path) -> str:
    """report.html: the same content as report.md with the images inlined."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>informer-nas report</title><style>{_CSS}</style></head><body>",
             "<h1>informer-nas report</h1><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in summary] + ["</ul>"]
    for name, caption in images.items():
        data = base64.b64encode((report_dir / name).read_bytes()).decode("ascii")
        parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{esc(caption)}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("<h2>Runs</h2><table><tr>"
                 + "".join(f"<th>{esc(c)}</th>" for c in RUN_COLUMNS) + "</tr>")
    for row in run_table_rows(status["runs"]):
        cells = "".join(f"<td>{esc(cell)}</td>" for cell in row[:-1])
        parts.append(f"<tr>{cells}<td class='{esc(row[-1])}'>{esc(row[-1])}</td></tr>")
    parts.append(f"</table><h2>Incumbent config</h2><pre>{esc(_config_text(status))}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
