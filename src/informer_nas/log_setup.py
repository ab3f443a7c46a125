"""Where the package's log records go during a CLI command: ``<workspace>/nas.log``.

Secrets are scrubbed from every record (``nas_system/secrets.py``); with ``--verbose`` the
records also go to the terminal, except those the live display already shows.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

Verbosity = Literal["quiet", "normal", "verbose"]
# The live display shows the session's events and the CLI prints its own errors.
_SHOWN_BY_DISPLAY = frozenset({"informer_nas.api", "informer_nas.cli"})


def output_console(quiet: bool = False) -> Any:
    """A rich ``Console`` on stdout, printing text as written (a ``[`` in a path or a plan is
    not markup), that outlives its reader: when the pipe closes (``nas run
    | head -1``, a ``tee`` that died) the output goes to /dev/null and the search goes on,
    logging to ``nas.log``; rich's default ends the program (exit 1, no message)."""
    from rich.console import Console

    class PipeSafeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    return PipeSafeConsole(quiet=quiet, highlight=False, markup=False)  # text as written


@contextmanager
def workspace_log(root: Path, verbosity: Verbosity = "normal") -> Iterator[None]:
    """Send the package's log records to ``<workspace>/nas.log`` (and stderr when verbose)."""
    from informer_nas.nas_system.secrets import ScrubFilter

    package_logger = logging.getLogger("informer_nas")
    package_logger.setLevel(logging.DEBUG if verbosity == "verbose" else logging.INFO)
    root.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(root / "nas.log", encoding="utf-8")]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if verbosity == "verbose":
        from rich.logging import RichHandler

        console = output_console()
        console_handler = RichHandler(console=console, show_path=False, level=logging.INFO)
        console_handler.addFilter(lambda record: record.name not in _SHOWN_BY_DISPLAY)
        handlers.append(console_handler)
    scrubber = ScrubFilter()
    for handler in handlers:
        handler.addFilter(scrubber)
        package_logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            package_logger.removeHandler(handler)
            handler.close()
