"""``nas status``, ``nas report``, ``nas replay`` and ``nas doctor``: the commands that look
at a workspace, or a recorded session, without searching on."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from informer_nas.cli.options import DEFAULT_WORKSPACE, WorkspaceOption, open_workspace
from informer_nas.cli.output import fail, user_errors
from informer_nas.log_setup import output_console, workspace_log
from informer_nas.plurals import counted

STATUS_RUNS = 30  # runs listed by `nas status` (the summary lines stay on one screen)


def status(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    show_all: Annotated[bool, typer.Option(
        "--all", help=f"List every run (default: the last {STATUS_RUNS} and the incumbent).")
    ] = False,
) -> None:
    """Runs, incumbent, budget, tokens and cost of a workspace."""
    from informer_nas.nas_system.status import workspace_status

    with user_errors():
        summary = workspace_status(open_workspace(workspace, validate=False))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_status_tables(summary, None if show_all else STATUS_RUNS)


def _print_status_tables(summary: dict[str, Any], last: int | None = None) -> None:
    from rich.table import Table

    from informer_nas.nas_system.status import (
        RUN_COLUMNS,
        format_mse,
        run_table_rows,
        usage_line,
    )

    console = output_console()
    table = Table(title=f"runs in {summary['workspace']}")
    incumbent_id = (summary["incumbent"] or {}).get("run_id")
    runs = summary["runs"]
    if last is not None and len(runs) > last:  # the incumbent stays listed, however old
        runs = [run for index, run in enumerate(runs)
                if index >= len(runs) - last or run["run_id"] == incumbent_id]
    rows = run_table_rows(runs)
    # One line per run: every column keeps its width and the changes get what is left. On
    # a narrow terminal the changes (below 12 characters), then the step type, are left out
    # (`nas status --json` has everything), so run ids and figures are never cut.
    widths = [max([len(column), *(len(row[index]) for row in rows)])
              for index, column in enumerate(RUN_COLUMNS)]
    wide, step = RUN_COLUMNS.index("changes"), RUN_COLUMNS.index("step")

    def room(columns: list[int]) -> int:  # characters left beside these columns
        return int(console.width) - sum(widths[index] + 3 for index in columns) - 1

    shown = [index for index in range(len(RUN_COLUMNS)) if index != wide]
    if room(shown) < 0:
        shown.remove(step)
    elif room(shown) - 3 >= 12:
        shown.insert(wide, wide)
    for index in shown:
        width = min(widths[index], room(shown) + widths[wide]) if index == wide else widths[index]
        table.add_column(RUN_COLUMNS[index], no_wrap=True, overflow="ellipsis", width=width)
    for run_row, cells in zip(runs, rows, strict=True):
        table.add_row(*(cells[index] for index in shown),
                      style="bold green" if run_row["run_id"] == incumbent_id else None)
    console.print(table)
    if len(runs) < len(summary["runs"]):
        console.print(f"({counted(len(summary['runs']) - len(runs), 'earlier run')} left out; "
                      "nas status --all lists them)")
    left_out = [RUN_COLUMNS[index] for index in (wide, step) if index not in shown]
    if left_out:
        console.print(f"(left out for the width: {', '.join(left_out)}; nas status --json "
                      "has them)")
    budget, total = summary["budget"], summary["usage"]["total"]
    incumbent = summary["incumbent"]
    console.print(f"planner {summary['planner'] or 'not chosen yet'}; budget "
                  f"{budget['iterations_done']}/{counted(budget['max_iterations'], 'iteration')}"
                  f", {budget['training_seconds']} s training")
    session = summary["session"]
    if session["running"]:
        console.print(f"a session is running: pid {session['pid']} since {session['since']}")
    console.print("incumbent " + (f"{incumbent['run_id']}: val MSE "
                                  f"{format_mse(incumbent['val_mse'])}, test MSE "
                                  f"{format_mse(incumbent['test_mse'])}" if incumbent
                                  else "none yet"))
    console.print(usage_line(total))


def report(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline",
                           help="Set a linear baseline (RLinear, trained once in seconds and "
                                "cached) against the incumbent.")
    ] = True,
) -> None:
    """Write report/: progress.png, the incumbent's curve, report.md and report.html."""
    from informer_nas.nas_system.report import write_report

    with user_errors():
        opened = open_workspace(workspace, validate=False)
        with workspace_log(opened.paths.root):
            report_dir = write_report(opened, baseline=baseline)
    typer.echo(f"report written: {report_dir / 'report.html'} (and report.md, progress.png)")


def replay(
    trace: Annotated[Path, typer.Argument(
        help="A traces/<session>.jsonl file, or a workspace: its latest session.")],
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="New directory to replay into (default: temp)."),
    ] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train again instead of using recorded results.")
    ] = False,
) -> None:
    """Replay a recorded session into a fresh workspace; exit 1 at the first divergence."""
    from informer_nas.agents.replay import replay_trace
    from informer_nas.agents.trace import session_traces

    with user_errors():
        traces = session_traces(trace)
    if trace.is_dir():
        typer.echo(f"replaying {traces[-1]} (the latest of {len(traces)} session traces)")
    temp_parent: Path | None = None
    if workspace is None:
        temp_parent = Path(tempfile.mkdtemp(prefix="nas-replay-"))
        workspace = temp_parent / "workspace"
    try:
        with user_errors():
            outcome = replay_trace(traces[-1], workspace=workspace, retrain=retrain)
    except BaseException:
        # The user was never told where a temporary workspace is: leave nothing behind.
        if temp_parent is not None:
            shutil.rmtree(temp_parent, ignore_errors=True)
        raise
    if not outcome.identical:
        fail(f"{outcome.summary()}; the replayed workspace is {outcome.workspace}")
    typer.echo(f"{outcome.summary()}; replayed workspace: {outcome.workspace}")


def doctor(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    repair: Annotated[
        bool, typer.Option("--repair", help="Repair what can be repaired (backups are kept).")
    ] = False,
) -> None:
    """Explain what is wrong with a workspace; exit 1 while a problem is left."""
    from informer_nas.nas_system.doctor import diagnose

    with user_errors():
        findings = diagnose(workspace, repair=repair)
    for line in findings.lines():
        typer.echo(line)
    if not findings.is_healthy:
        raise typer.Exit(1)
