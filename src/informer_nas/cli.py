"""``nas``: the command line of informer-nas (Typer).

Each command parses typed options, calls one ``nas_system`` / ``api`` function and prints.
A ``NasError`` ends as one line ``error: ...`` on stderr with exit code 1; bad options exit
2 (Typer's default). ``nas train`` exits with the trainer's code for each outcome (an invalid
config: 2). Everything heavy (torch, the Agents SDK, optuna, pandas, matplotlib,
pydantic models) is imported inside the commands so that ``nas --help`` answers at once.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from informer_nas.log_setup import workspace_log
from informer_nas.plurals import counted

if TYPE_CHECKING:
    from informer_nas.display import SessionDisplay
    from informer_nas.log_setup import Verbosity
    from informer_nas.nas_system.session import SessionResult
    from informer_nas.nas_system.workspace import Workspace

app = typer.Typer(
    name="nas",
    help="Autonomous architecture and hyper-parameter search for Informer on ETT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_WORKSPACE = Path("nas-workspace")
INTERRUPTED_EXIT = 130
# Records go only where a command sends them (nas.log), never to Python's last-resort
# stderr handler: a user error is printed once, by _fail.
logging.getLogger("informer_nas").addHandler(logging.NullHandler())
logger = logging.getLogger("informer_nas.cli")  # also under `python -m informer_nas.cli`


class Preset(str, Enum):
    tiny = "tiny"
    quick = "quick"
    paper = "paper"


class PlannerName(str, Enum):
    tpe = "tpe"
    random = "random"
    llm = "llm"
    hybrid = "hybrid"


class FallbackName(str, Enum):
    tpe = "tpe"


class PruneRule(str, Enum):
    median = "median"
    percentile = "percentile"


WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace directory.", file_okay=False)
]
PresetOption = Annotated[Preset, typer.Option(help="Starting config for a new workspace.")]


def _finite_timeout(value: float | None) -> float | None:
    """``--timeout``: ``min=1`` lets inf and nan through (1e400 is inf); a usage error."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number of seconds >= 1, got {value}; "
                                 "e.g. --timeout 600")
    return value


# Shared plumbing --------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> NoReturn:
    from informer_nas.nas_system.secrets import redact_text

    typer.echo(f"error: {redact_text(message)}", err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors(config_error_code: int = 1) -> Iterator[None]:
    """Turn a NasError, or an OSError (a path that cannot be created, read or written),
    into one line on stderr and exit code 1 (no traceback); a ConfigError exits
    ``config_error_code``."""
    from informer_nas.errors import ConfigError, NasError

    try:
        yield
    except NasError as exc:
        logger.error("%s", exc)
        code = config_error_code if isinstance(exc, ConfigError) else 1
        _fail(" ".join(str(exc).split()) or type(exc).__name__, code)
    except OSError as exc:
        logger.error("%s", exc)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}; {_os_advice(exc)}")


def _os_advice(error: OSError) -> str:
    """What to do about an OSError, by its errno (state saved so far is kept: `nas resume`
    continues once it is fixed)."""
    import errno

    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free disk space, then run the command again (a session: `nas resume`)"
    if error.errno == errno.EFBIG:
        return ("a file-size limit was reached (ulimit -f); raise it, then run the command "
                "again (a session: `nas resume`)")
    return "check that the path is a directory you can write to, or choose another"


def _quoted(path: Path) -> str:
    """A path as it can be pasted into a shell (quoted when it holds spaces)."""
    return shlex.quote(str(path))


def _console(quiet: bool = False) -> Any:
    from informer_nas.log_setup import output_console

    return output_console(quiet)


def _open_workspace(root: Path, validate: bool = True) -> Workspace:
    """The workspace at ``root``; ``validate`` False for the commands that only read its
    records (status, report), which work while a hand edit has broken config.py."""
    from informer_nas.nas_system.workspace import Workspace

    return Workspace.open(root, validate=validate)


def _verbosity(quiet: bool, verbose: bool) -> Verbosity:
    if quiet and verbose:
        _fail("--quiet and --verbose exclude each other; pass at most one", code=2)
    return "quiet" if quiet else "verbose" if verbose else "normal"


def _finish(result: SessionResult, root: Path) -> None:
    """Print how a session ended; an interruption or a lost LLM exits non-zero."""
    from informer_nas.nas_system.status import format_mse, workspace_status

    resume_hint = f"nas resume --workspace {_quoted(root)}"
    if result.stopped_by == "interrupted":
        _interrupted(root, result.message or "interrupted")
    if result.stopped_by == "trainings_failing":
        _fail(f"stopped: {' '.join(result.message.split())}; fix the cause (see "
              f"runs/<id>/train.log), then `{resume_hint}`")
    if result.stopped_by == "brain_unavailable":
        _fail(f"the planner's model is unavailable ({' '.join(result.message.split())}); the "
              f"state is saved: continue with `{resume_hint}` or pass --fallback tpe")
    more = (f"{resume_hint} --iters {result.iteration + 10}"
            if result.iteration >= result.max_iterations else resume_hint)
    if result.stopped_by == "no_candidates":
        _fail(f"stopped: {' '.join(result.message.split())}; check the planner's answers (its "
              f"trace in traces/) and settings, or pass --fallback tpe, then `{more}`")
    if result.stopped_by == "budget" and result.searched_nothing:
        _fail(f"no iteration of this session trained a candidate (the last: "
              f"{' '.join(result.message.split())}); fix the cause, then `{more}`")
    with _user_errors():
        status = workspace_status(_open_workspace(root))
    budget, incumbent = status["budget"], status["incumbent"]
    why = "; the planner stopped early" if result.stopped_by == "planner" else ""
    done, total = budget["iterations_done"], budget["max_iterations"]
    typer.echo(f"done: {done}/{counted(total, 'iteration')}, {counted(budget['runs'], 'run')}"
               f"{why}")
    if result.stopped_by == "budget" and result.iterations_run == 0:
        typer.echo(f"nothing to run: the budget of {counted(total, 'iteration')} is "
                   f"spent; extend it with `{resume_hint} --iters {done + 10}`")
    if incumbent:
        typer.echo(f"incumbent {incumbent['run_id']}: val MSE {format_mse(incumbent['val_mse'])}"
                   f", test MSE {format_mse(incumbent['test_mse'])}")
    typer.echo(f"next: nas status --workspace {_quoted(root)}  |  nas report --workspace "
               f"{_quoted(root)}")


@contextmanager
def _session_display(
    root: Path, verbosity: Verbosity, max_iterations: int | None, planner: str = ""
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A live display's observer; Ctrl+C or SIGTERM (a service manager stopping it) ends the
    command cleanly, naming ``nas resume``."""
    from informer_nas.display import SessionDisplay

    console = _console(quiet=verbosity == "quiet")
    try:
        with _sigterm_as_interrupt(), _user_errors(), SessionDisplay(
                console, verbosity, max_iterations, planner) as display:
            yield lambda event: _show(display, event)
    except KeyboardInterrupt as stop:
        from informer_nas.errors import interruption_reason

        why = interruption_reason(stop)
        logger.warning("%s", why)
        _interrupted(root, why)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (``StopSignal``), as Ctrl+C does, for the block (a
    training installs its own forwarding on top, and restores this one). SIGHUP (the
    terminal was closed) goes to whoever handles SIGTERM now, so it stops the session, or
    the training, the same way, and is recorded as SIGHUP; under ``nohup`` it stays
    ignored."""
    import signal

    from informer_nas.errors import StopSignal

    def interrupt(signum: int, frame: Any) -> None:
        raise StopSignal(signum)

    def hangup(signum: int, frame: Any) -> None:
        _drop_hung_up_terminal()
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signum, frame)  # with the signal's own number: the records name it
        else:
            signal.raise_signal(signal.SIGTERM)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt)}
    sighup = getattr(signal, "SIGHUP", None)  # None on Windows
    if sighup is not None and signal.getsignal(sighup) is not signal.SIG_IGN:
        previous[sighup] = signal.signal(sighup, hangup)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _drop_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null where they are a terminal that hung up (closed):
    every write there fails (EIO), and the clean stop would end in an error. A live
    terminal (``kill -HUP``), a file or a pipe keeps the output."""
    import errno
    import os

    try:
        import termios
    except ImportError:  # not POSIX
        return
    for fd in (1, 2):
        try:
            termios.tcgetattr(fd)
        except termios.error as exc:
            if exc.args and exc.args[0] == errno.EIO:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)


def _interrupted(root: Path, why: str = "interrupted") -> NoReturn:
    """Say that the command stopped (``why``: ``interrupted``, ``stopped by SIGHUP``) and how
    to go on; exit with the interruption's code."""
    from informer_nas.api import existing_state

    why = "interrupted" if why == "interrupted by the user" else why
    state = existing_state(root)
    if state is None or not state.sessions:  # stopped before the session was recorded
        message = (f"{why} before the search started; nothing to resume: run the same "
                   "command again")
    else:
        message = (f"{why}; the state is saved. Continue with: nas resume --workspace "
                   f"{_quoted(root)}")
    try:
        typer.echo(message, err=True)
    except OSError:  # the terminal is gone (SIGHUP): the exit code still says it
        pass
    raise typer.Exit(INTERRUPTED_EXIT) from None


def _check_llm_settings(planner: str) -> None:
    """An LLM planner's endpoint settings (``NAS_LLM_MAX_RETRIES=nan``...) are read before
    the session records anything: a malformed one is one line, the workspace untouched."""
    if planner not in ("llm", "hybrid"):
        return
    from informer_nas.agents.brains.llm_settings import llm_configured, load_llm_settings

    if llm_configured():  # else the session says so, as before
        with _user_errors():
            load_llm_settings()


def _show(display: SessionDisplay, event: dict[str, Any]) -> None:
    """Draw a session event; ``session_start`` names the planner the session resolved."""
    if event.get("event") == "session_start":
        display.planner = str(event.get("planner") or display.planner)
    display(event)


# Commands ---------------------------------------------------------------------------------


@app.command()
def init(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    preset: PresetOption = Preset.quick,
    data: Annotated[Path | None, typer.Option(help="A CSV (date column); default: ETTh1.")] = None,
    space: Annotated[Path | None, typer.Option(help=(
        'A JSON file narrowing the search, e.g. {"model.d_model": {"choices": [64, 128]}, '
        '"training.max_epochs": {"low": 6, "high": 6}}.'))] = None,
) -> None:
    """Create a workspace: a commented config.py from a preset and a fresh state."""
    from informer_nas.nas_system.search_space import read_narrowing_file
    from informer_nas.nas_system.workspace import Workspace

    with _user_errors():
        narrowing = read_narrowing_file(space) if space else None
        created = Workspace.create(workspace, preset.value, data_path=data, narrowing=narrowing)
    typer.echo(f"created workspace {workspace} (preset {preset.value}); edit "
               f"{created.paths.config} or start with: nas run --iters 10 --workspace "
               f"{_quoted(workspace)}")
    if data is not None:
        task = created.config().data
        typer.echo(f"data {task.path}: features {task.features}, target {task.target!r}, split "
                   f"{task.split!r}, freq {task.freq!r}, forecasting "
                   f"{counted(task.pred_len, 'step')} "
                   "(the task is fixed once the first run is trained)")
    for note in created.notes:
        typer.echo(f"  {note}")
    if narrowing:
        typer.echo(f"search narrowed on {counted(len(narrowing), 'key')} "
                   f"({', '.join(narrowing)})"
                   + _moved_values(preset.value, created.config(), narrowing))


def _moved_values(preset: str, config: Any, keys: Any) -> str:
    """``; starting values moved into it: k a -> b`` for the preset values outside it (and
    the look-back, moved to hold a longer label part)."""
    from informer_nas.informer.presets import preset_config
    from informer_nas.nas_system.search_space import flatten

    before, after = flatten(preset_config(preset).to_dict()), flatten(config.to_dict())
    shown = dict.fromkeys([*keys, "data.seq_len"])  # the narrowed keys first, no repeat
    moved = [f"{k} {before[k]!r} -> {after[k]!r}" for k in shown if before[k] != after[k]]
    return f"; starting values moved into it: {', '.join(moved)}" if moved else ""


@app.command()
def run(
    iters: Annotated[int, typer.Option("--iters", "-n", min=1, help="Total iteration budget.")],
    planner: Annotated[
        PlannerName | None,
        typer.Option(help="The brain (default: hybrid with an LLM endpoint, else tpe)."),
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    preset: Annotated[Preset | None, typer.Option(
        help="Starting config for a new workspace [default: quick].")] = None,
    seed: Annotated[int | None, typer.Option(
        min=0, help="Base seed (default: the workspace's, else 0).")] = None,
    confirm_seeds: Annotated[int | None, typer.Option(
        min=0, help="Extra seeds to confirm winners (default: the workspace's, else 0).")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, callback=_finite_timeout, help="Seconds per training.")] = None,
    fallback: Annotated[FallbackName | None, typer.Option(help="Brain if the LLM fails.")] = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Never stop a trial early.")] = False,
    prune_rule: Annotated[PruneRule | None, typer.Option(help="Default: median.")] = None,
    prune_percentile: Annotated[float | None, typer.Option(min=0, max=100, help=(
        "For --prune-rule percentile: prune a trial worse than this percentile of the earlier "
        "ones at the same epoch (25 prunes more than 50)."))] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every epoch.")] = False,
) -> None:
    """Search: plan, train, judge and record, ITERS iterations in all (creates the workspace)."""
    verbosity = _verbosity(quiet, verbose)
    if no_prune and (prune_rule is not None or prune_percentile is not None):
        _fail("--no-prune turns pruning off; it excludes --prune-rule and --prune-percentile",
              code=2)
    from informer_nas.api import default_planner, existing_state, run_nas_optimization

    existing = existing_state(workspace)
    if preset is not None and existing is not None and existing.preset != preset.value:
        typer.echo(f"note: {workspace} exists with preset {existing.preset}; --preset only sets "
                   f"up a new workspace (use another --workspace for a {preset.value} search)",
                   err=verbosity == "quiet")
    kept = None if planner or existing is None else existing.planner or None
    chosen = planner.value if planner else kept or default_planner()
    origin = "" if planner else " (the workspace's)" if kept else " (default: " + (
        "an LLM endpoint is configured)" if chosen == "hybrid" else "no LLM endpoint configured)")
    _check_llm_settings(chosen)
    console = _console(quiet=verbosity == "quiet")
    if existing is None and not (workspace / "config.py").exists():  # (a misspelt path too)
        console.print(f"new workspace {workspace} (preset {(preset or Preset.quick).value})",
                      soft_wrap=True)
    console.print(f"planner: {chosen}{origin}")
    with _user_errors(), workspace_log(workspace, verbosity), _session_display(
            workspace, verbosity, iters, chosen) as display:
        result = run_nas_optimization(
            workspace=workspace, iters=iters, planner=chosen,
            preset=(preset or Preset.quick).value, seed=seed,
            confirm_seeds=confirm_seeds, timeout=timeout, prune=False if no_prune else None,
            prune_rule=prune_rule.value if prune_rule else None, prune_percentile=prune_percentile,
            fallback=fallback.value if fallback else None, observer=display,
        )
    _finish(result, workspace)


@app.command()
def resume(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    iters: Annotated[int | None, typer.Option("--iters", "-n", min=1, help="Total budget.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every epoch.")] = False,
) -> None:
    """Continue a session up to its (or a larger) budget, with its planner and settings."""
    verbosity = _verbosity(quiet, verbose)
    from informer_nas.api import default_planner, existing_state, run_nas_optimization

    with _user_errors():
        _open_workspace(workspace)  # not a workspace: one line, never a new one
    kept = existing_state(workspace)
    if kept is not None and not kept.sessions and iters is None:
        _fail(f"no search has started in {workspace} yet, so none can be resumed (the command "
              f"creating it stopped first, or `nas init` made it); start one with `nas run "
              f"--workspace {_quoted(workspace)} --iters 10`")
    _check_llm_settings(kept.planner if kept and kept.planner else default_planner())
    with _user_errors(), workspace_log(workspace, verbosity), _session_display(
            workspace, verbosity, iters) as display:
        result = run_nas_optimization(workspace=workspace, iters=iters, observer=display)
    _finish(result, workspace)


@app.command()
def status(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    show_all: Annotated[bool, typer.Option(
        "--all", help=f"List every run (default: the last {STATUS_RUNS} and the incumbent).")
    ] = False,
) -> None:
    """Runs, incumbent, budget, tokens and cost of a workspace."""
    from informer_nas.nas_system.status import workspace_status

    with _user_errors():
        summary = workspace_status(_open_workspace(workspace, validate=False))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_status_tables(summary, None if show_all else STATUS_RUNS)


STATUS_RUNS = 30  # runs listed by `nas status` (the summary lines stay on one screen)


def _print_status_tables(summary: dict[str, Any], last: int | None = None) -> None:
    from rich.table import Table

    from informer_nas.nas_system.status import (
        RUN_COLUMNS,
        format_mse,
        run_table_rows,
        usage_line,
    )

    console = _console()
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


@app.command()
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

    with _user_errors():
        opened = _open_workspace(workspace, validate=False)
        with workspace_log(opened.paths.root):
            report_dir = write_report(opened, baseline=baseline)
    typer.echo(f"report written: {report_dir / 'report.html'} (and report.md, progress.png)")


@app.command()
def replay(
    trace: Annotated[Path, typer.Argument(help="A traces/<session>.jsonl file.", dir_okay=False)],
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

    temp_parent: Path | None = None
    if workspace is None:
        temp_parent = Path(tempfile.mkdtemp(prefix="nas-replay-"))
        workspace = temp_parent / "workspace"
    try:
        with _user_errors():
            outcome = replay_trace(trace, workspace=workspace, retrain=retrain)
    except BaseException:
        # The user was never told where a temporary workspace is: leave nothing behind.
        if temp_parent is not None:
            shutil.rmtree(temp_parent, ignore_errors=True)
        raise
    if not outcome.identical:
        _fail(f"{outcome.summary()}; the replayed workspace is {outcome.workspace}")
    typer.echo(f"{outcome.summary()}; replayed workspace: {outcome.workspace}")


@app.command()
def doctor(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    repair: Annotated[
        bool, typer.Option("--repair", help="Repair what can be repaired (backups are kept).")
    ] = False,
) -> None:
    """Explain what is wrong with a workspace; exit 1 while a problem is left."""
    from informer_nas.nas_system.doctor import diagnose

    with _user_errors():
        findings = diagnose(workspace, repair=repair)
    for line in findings.lines():
        typer.echo(line)
    if not findings.is_healthy:
        raise typer.Exit(1)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="A config.py file.", dir_okay=False)],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Where the run's files go.")],
    seed: Annotated[int | None, typer.Option(min=0, help="Overrides training.seed.")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, callback=_finite_timeout, help="Seconds allowed.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every epoch.")] = False,
) -> None:
    """Train one config into a run directory (the trainer subprocess, with a progress bar).

    Exit codes (the trainer's): 0 ok, 1 crashed or timed out, 2 invalid config,
    3 diverged, 4 out of memory, 5 pruned, 130 interrupted.
    """
    verbosity = _verbosity(quiet, verbose)
    from informer_nas.display import SessionDisplay
    from informer_nas.informer.config import load_config
    from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
    from informer_nas.nas_system.records import EXIT_CODES, RunStatus
    from informer_nas.nas_system.status import format_mse

    console = _console()
    with _user_errors(config_error_code=EXIT_CODES[RunStatus.INVALID_CONFIG]):
        chosen_seed = load_config(config).training.seed if seed is None else seed
        finished = [name for name in ("metrics.json", "history.json", "best_model.pt")
                    if (run_dir / name).exists()]
        if finished:
            _fail(f"{run_dir} already holds a run ({', '.join(finished)}); choose a new "
                  "--run-dir, or delete that one first")
        try:
            with SessionDisplay(console, verbosity, show_session=False) as display:
                outcome = LocalSubprocessExecutor().run(config, run_dir, chosen_seed, timeout,
                                                        on_event=display)
        except KeyboardInterrupt:
            typer.echo(f"interrupted; partial results in {run_dir}", err=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None
    metrics = outcome.metrics
    if outcome.status.is_success:
        console.print(f"ok: val MSE {format_mse(metrics.get('val_mse'))}, test MSE "
                      f"{format_mse(metrics.get('test_mse'))} in {outcome.seconds:.1f} s; "
                      f"files in {run_dir}")
        return
    hint = "; raise --timeout" if outcome.status.value == "timeout" else ""
    typer.echo(f"error: training {outcome.status.value}: {outcome.reason}{hint}", err=True)
    raise typer.Exit(EXIT_CODES.get(outcome.status, 1))


def main() -> None:
    """The ``nas`` command (and ``python -m informer_nas.cli``): a usage error (a missing or
    malformed option, an unknown command) is one line naming the help to read, exit 2."""
    try:
        code = app(standalone_mode=False, prog_name="nas")
    except typer.Abort:  # Ctrl+C outside a session (a session handles its own)
        raise SystemExit(INTERRUPTED_EXIT) from None
    except typer.TyperException as exc:  # Typer's (vendored Click's) usage errors
        status = int(getattr(exc, "exit_code", 1))
        context = getattr(exc, "ctx", None)
        hint = f"; see `{context.command_path} --help`" if status == 2 and context else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message.strip():  # (bare `nas` printed its help: nothing to add)
            from informer_nas.informer.config import without_pydantic_prefix

            # Typer checks option values with pydantic: "Value error, 'gpt' is not one of"
            message = without_pydantic_prefix(" ".join(message.split()))
            typer.echo(f"error: {message.rstrip('.')}{hint}", err=True)
        raise SystemExit(status) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
