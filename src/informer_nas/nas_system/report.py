"""``nas report``: pictures and tables of a workspace, as Markdown and self-contained HTML.

Writes into ``report/``: ``progress.png`` (val MSE per iteration, the incumbent's line,
accepted, rejected and not judged runs marked, the linear baseline's val MSE),
``incumbent_curve.png`` (the incumbent's learning curve, re-plotted from its
``history.json``), ``report.md`` and ``report.html`` (the images embedded as base64 data
URIs, so the one file opens anywhere). The figures are drawn by ``figures``.

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
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.figures import plot_learning_curve, plot_progress, save_figure
from informer_nas.nas_system.state import AgentState, load_state
from informer_nas.nas_system.status import (
    RUN_COLUMNS,
    format_mse,
    run_table_rows,
    usage_line,
    workspace_status,
)
from informer_nas.plurals import counted

if TYPE_CHECKING:
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
    save_figure(plot_progress(status["runs"], baseline_mse), report_dir / PROGRESS_PNG)
    if _write_incumbent_curve(workspace, status, report_dir / CURVE_PNG):
        images[CURVE_PNG] = f"Learning curve of the incumbent {status['incumbent']['run_id']}"
    else:
        (report_dir / CURVE_PNG).unlink(missing_ok=True)
    atomic_write_text(report_dir / "report.md", render_markdown(status, summary, images))
    html_text = render_html(status, summary, images, report_dir)
    atomic_write_text(report_dir / "report.html", html_text)
    logger.info("report written to %s", report_dir)
    return report_dir


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
        save_figure(plot_learning_curve(epochs, f"Incumbent {incumbent['run_id']}"), target)
        return True
    if (run_dir / "learning_curve.png").is_file():
        shutil.copyfile(run_dir / "learning_curve.png", target)
        return True
    logger.warning("no history.json or learning_curve.png in %s", run_dir)
    return False


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
    from informer_nas.nas_system.task import data_problem

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
