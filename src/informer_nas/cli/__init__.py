"""``nas``: the command line of informer-nas (Typer).

Each command parses typed options, calls one ``nas_system`` / ``api`` function and prints.
A ``NasError`` ends as one line ``error: ...`` on stderr with exit code 1; bad options exit
2 (Typer's default). ``nas train`` exits with the trainer's code for each outcome (an invalid
config: 2). Everything heavy (torch, the Agents SDK, optuna, pandas, matplotlib,
pydantic models) is imported inside the commands so that ``nas --help`` answers at once.

This package holds the app, ``main`` and the commands' registration; the commands live in
``session_commands`` (run, resume), ``inspection_commands`` (status, report, replay,
doctor) and ``workspace_commands`` (init, train), with the options they share in
``options`` and the error lines and exit codes in ``output``.
"""

from __future__ import annotations

import logging

import typer

from informer_nas.cli.inspection_commands import doctor, replay, report, status
from informer_nas.cli.output import INTERRUPTED_EXIT
from informer_nas.cli.session_commands import resume, run
from informer_nas.cli.workspace_commands import init, train

app = typer.Typer(
    name="nas",
    help="Autonomous architecture and hyper-parameter search for Informer on ETT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Registered in the order `nas --help` lists them.
app.command()(init)
app.command()(run)
app.command()(resume)
app.command()(status)
app.command()(report)
app.command()(replay)
app.command()(doctor)
app.command()(train)

# Records go only where a command sends them (nas.log), never to Python's last-resort
# stderr handler: a user error is printed once, by output.fail.
logging.getLogger("informer_nas").addHandler(logging.NullHandler())


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
