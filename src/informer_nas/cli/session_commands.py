"""``nas run`` and ``nas resume``: a search session with its live display, its clean stop on
Ctrl+C, SIGTERM or SIGHUP, and the lines that say how it ended."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from informer_nas.cli.options import (
    DEFAULT_WORKSPACE,
    FallbackName,
    KeepCheckpoints,
    PlannerName,
    Preset,
    PruneRule,
    QuietOption,
    VerboseOption,
    WorkspaceOption,
    finite_timeout,
    open_workspace,
    verbosity_of,
)
from informer_nas.cli.output import INTERRUPTED_EXIT, fail, quoted, user_errors
from informer_nas.log_setup import output_console, workspace_log
from informer_nas.plurals import counted

if TYPE_CHECKING:
    from informer_nas.display import SessionDisplay
    from informer_nas.log_setup import Verbosity
    from informer_nas.nas_system.session import SessionResult

# The package's name, not this module's: log_setup leaves its records to the CLI's own lines.
logger = logging.getLogger("informer_nas.cli")


def run(
    iters: Annotated[int, typer.Option("--iters", "-n", min=1, help="Total iteration budget.")],
    planner: Annotated[
        PlannerName | None,
        typer.Option(help="The brain (default: hybrid with an LLM endpoint, else tpe)."),
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    preset: Annotated[Preset | None, typer.Option(
        help="Starting config for a new workspace (default: quick).")] = None,
    seed: Annotated[int | None, typer.Option(
        min=0, help="Base seed (default: the workspace's, else 0).")] = None,
    confirm_seeds: Annotated[int | None, typer.Option(
        min=0, help="Extra seeds to confirm winners (default: the workspace's, else 0).")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, callback=finite_timeout, help="Seconds per training.")] = None,
    fallback: Annotated[FallbackName | None, typer.Option(help="Brain if the LLM fails.")] = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Never stop a trial early.")] = False,
    prune_rule: Annotated[PruneRule | None, typer.Option(help="Default: median.")] = None,
    prune_percentile: Annotated[float | None, typer.Option(min=0, max=100, help=(
        "For --prune-rule percentile: prune a trial worse than this percentile of the earlier "
        "ones at the same epoch (25 prunes more than 50)."))] = None,
    keep_checkpoints: Annotated[KeepCheckpoints | None, typer.Option(help=(
        "Which runs keep best_model.pt: all, or only the incumbent, the others' being "
        "deleted at each verdict (default: as the workspace's last session, else all)."))] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Search: plan, train, judge and record, ITERS iterations in all (creates the workspace)."""
    verbosity = verbosity_of(quiet, verbose)
    if no_prune and (prune_rule is not None or prune_percentile is not None):
        fail("--no-prune turns pruning off; it excludes --prune-rule and --prune-percentile",
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
    console = output_console(quiet=verbosity == "quiet")
    if existing is None and not (workspace / "config.py").exists():  # (a misspelt path too)
        console.print(f"new workspace {workspace} (preset {(preset or Preset.quick).value})",
                      soft_wrap=True)
    console.print(f"planner: {chosen}{origin}")
    with user_errors(), workspace_log(workspace, verbosity), _session_display(
            workspace, verbosity, iters, chosen) as display:
        result = run_nas_optimization(
            workspace=workspace, iters=iters, planner=chosen,
            preset=(preset or Preset.quick).value, seed=seed,
            confirm_seeds=confirm_seeds, timeout=timeout, prune=False if no_prune else None,
            prune_rule=prune_rule.value if prune_rule else None, prune_percentile=prune_percentile,
            fallback=fallback.value if fallback else None, observer=display,
            keep_checkpoints=keep_checkpoints.value if keep_checkpoints else None,
        )
    _finish(result, workspace)


def resume(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    iters: Annotated[int | None, typer.Option("--iters", "-n", min=1, help="Total budget.")] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Continue a session up to its (or a larger) budget, with its planner and settings."""
    verbosity = verbosity_of(quiet, verbose)
    from informer_nas.api import default_planner, existing_state, run_nas_optimization

    with user_errors():
        open_workspace(workspace)  # not a workspace: one line, never a new one
    kept = existing_state(workspace)
    if kept is not None and not kept.sessions and iters is None:
        fail(f"no search has started in {workspace} yet, so none can be resumed (the command "
             f"creating it stopped first, or `nas init` made it); start one with `nas run "
             f"--workspace {quoted(workspace)} --iters 10`")
    _check_llm_settings(kept.planner if kept and kept.planner else default_planner())
    with user_errors(), workspace_log(workspace, verbosity), _session_display(
            workspace, verbosity, iters) as display:
        result = run_nas_optimization(workspace=workspace, iters=iters, observer=display)
    _finish(result, workspace)


def _finish(result: SessionResult, root: Path) -> None:
    """Print how a session ended; an interruption or a lost LLM exits non-zero."""
    from informer_nas.nas_system.status import format_mse, workspace_status

    resume_hint = f"nas resume --workspace {quoted(root)}"
    if result.stopped_by == "interrupted":
        _interrupted(root, result.message or "interrupted")
    if result.stopped_by == "trainings_failing":
        fail(f"stopped: {' '.join(result.message.split())}; fix the cause (see "
             f"runs/<id>/train.log), then `{resume_hint}`")
    if result.stopped_by == "brain_unavailable":
        fail(f"the planner's model is unavailable ({' '.join(result.message.split())}); the "
             f"state is saved: continue with `{resume_hint}` or pass --fallback tpe")
    more = (f"{resume_hint} --iters {result.iteration + 10}"
            if result.iteration >= result.max_iterations else resume_hint)
    if result.stopped_by == "no_candidates":
        fail(f"stopped: {' '.join(result.message.split())}; check the planner's answers (its "
             f"trace in traces/) and settings, or pass --fallback tpe, then `{more}`")
    if result.stopped_by == "budget" and result.searched_nothing:
        fail(f"no iteration of this session trained a candidate (the last: "
             f"{' '.join(result.message.split())}); fix the cause, then `{more}`")
    with user_errors():
        status = workspace_status(open_workspace(root))
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
    typer.echo(f"next: nas status --workspace {quoted(root)}  |  nas report --workspace "
               f"{quoted(root)}")


@contextmanager
def _session_display(
    root: Path, verbosity: Verbosity, max_iterations: int | None, planner: str = ""
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A live display's observer; Ctrl+C or SIGTERM (a service manager stopping it) ends the
    command cleanly, naming ``nas resume``."""
    from informer_nas.display import SessionDisplay

    console = output_console(quiet=verbosity == "quiet")
    try:
        with _sigterm_as_interrupt(), user_errors(), SessionDisplay(
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
                   f"{quoted(root)}")
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
        with user_errors():
            load_llm_settings()


def _show(display: SessionDisplay, event: dict[str, Any]) -> None:
    """Draw a session event; ``session_start`` names the planner the session resolved."""
    if event.get("event") == "session_start":
        display.planner = str(event.get("planner") or display.planner)
    display(event)
