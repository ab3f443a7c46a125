"""``nas report``: pictures and tables of a workspace, as Markdown and self-contained HTML.

Writes into ``report/``: ``progress.png`` (val MSE per iteration, the best-so-far line,
accepted and rejected runs marked), ``incumbent_curve.png`` (the incumbent's learning curve,
re-plotted from its ``history.json``), ``report.md`` and ``report.html`` (the images
embedded as base64 data URIs, so the one file opens anywhere). matplotlib is imported
lazily and used through its object-oriented API (no pyplot, no display needed).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from informer_nas.nas_system.atomic import atomic_write_bytes, atomic_write_text
from informer_nas.nas_system.status import (
    RUN_COLUMNS,
    format_mse,
    run_table_rows,
    workspace_status,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger(__name__)

PROGRESS_PNG = "progress.png"
CURVE_PNG = "incumbent_curve.png"


def write_report(workspace: Workspace) -> Path:
    """Write the report of a workspace and return the ``report/`` directory.

    Args:
        workspace: an opened workspace (its state is read, never changed).
    """
    status = workspace_status(workspace)
    report_dir: Path = workspace.paths.report
    report_dir.mkdir(parents=True, exist_ok=True)
    images = {PROGRESS_PNG: "Validation MSE per iteration"}
    _save_figure(plot_progress(status["runs"]), report_dir / PROGRESS_PNG)
    if _write_incumbent_curve(workspace, status, report_dir / CURVE_PNG):
        images[CURVE_PNG] = f"Learning curve of the incumbent {status['incumbent']['run_id']}"
    else:
        (report_dir / CURVE_PNG).unlink(missing_ok=True)
    atomic_write_text(report_dir / "report.md", render_markdown(status, images))
    atomic_write_text(report_dir / "report.html", render_html(status, images, report_dir))
    logger.info("report written to %s", report_dir)
    return report_dir


# Plots ----------------------------------------------------------------------------------


def _new_figure() -> tuple[Figure, Axes]:
    # The object-oriented API: no pyplot state, no GUI backend, safe in any thread.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.subplots()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations and epochs
    return figure, axes


def plot_progress(runs: list[dict[str, Any]]) -> Figure:
    """Val MSE per iteration: accepted (green), rejected (red), failed (grey), best so far."""
    figure, axes = _new_figure()
    scored = [run for run in runs if run["val_mse"] is not None]
    for label, color, marker, is_accepted in (
        ("accepted", "tab:green", "o", True),
        ("rejected", "tab:red", "x", False),
    ):
        chosen = [run for run in scored if (run["accepted"] is True) == is_accepted]
        if chosen:
            axes.scatter([r["iteration"] for r in chosen], [r["val_mse"] for r in chosen],
                         label=label, color=color, marker=marker, zorder=3)
    best_x, best_y = _best_so_far(runs)
    if best_x:
        axes.step(best_x, best_y, where="post", color="tab:blue", label="incumbent (best so far)")
    failed = [run["iteration"] for run in runs if run["val_mse"] is None]
    for index, iteration in enumerate(failed):
        axes.axvline(iteration, color="grey", linestyle=":", label="failed" if index == 0 else None)
    axes.set_xlabel("iteration")
    axes.set_ylabel("validation MSE")
    axes.set_title("Search progress")
    axes.grid(alpha=0.3)
    if runs:
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    return figure


def _best_so_far(runs: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """The incumbent's val MSE after each iteration (accepted runs only)."""
    xs: list[int] = []
    ys: list[float] = []
    for run in runs:
        if run["accepted"] is True and run["val_mse"] is not None:
            xs.append(run["iteration"])
            ys.append(run["val_mse"])
    if xs and runs:
        xs.append(max(run["iteration"] for run in runs))
        ys.append(ys[-1])
    return xs, ys


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


# Text -----------------------------------------------------------------------------------


def _summary_lines(status: dict[str, Any]) -> list[str]:
    budget, total = status["budget"], status["usage"]["total"]
    incumbent = status["incumbent"]
    best = (f"{incumbent['run_id']} (val MSE {format_mse(incumbent['val_mse'])}, "
            f"test MSE {format_mse(incumbent['test_mse'])})") if incumbent else "none yet"
    return [
        f"Workspace: {status['workspace']}",
        f"Planner: {status['planner']}",
        f"Budget: {budget['iterations_done']} of {budget['max_iterations']} iterations, "
        f"{budget['runs']} runs, {budget['training_seconds']} s of training",
        f"Incumbent: {best}",
        f"Tokens: {total['input_tokens']} in, {total['output_tokens']} out in "
        f"{total['requests']} requests, estimated cost ${total['cost_usd']:.4f}",
    ]


def _config_text(status: dict[str, Any]) -> str:
    incumbent = status["incumbent"]
    return json.dumps(incumbent["config"], indent=2) if incumbent else "(no incumbent yet)"


def render_markdown(status: dict[str, Any], images: dict[str, str]) -> str:
    """report.md: summary, pictures (linked files), table of runs, incumbent config."""
    lines = ["# informer-nas report", ""]
    lines += [f"- {line}" for line in _summary_lines(status)] + [""]
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


def render_html(status: dict[str, Any], images: dict[str, str], report_dir: Path) -> str:
    """report.html: the same content as report.md with the images inlined."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>informer-nas report</title><style>{_CSS}</style></head><body>",
             "<h1>informer-nas report</h1><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in _summary_lines(status)] + ["</ul>"]
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
