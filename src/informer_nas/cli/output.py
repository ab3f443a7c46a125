"""How the commands end besides their results: one ``error: ...`` line on stderr and an exit
code, for our own errors and the operating system's, and paths quoted for the hints."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

INTERRUPTED_EXIT = 130
# The package's name, not this module's: log_setup leaves its records to the CLI's own lines.
logger = logging.getLogger("informer_nas.cli")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` (secrets redacted) on stderr and exit with ``code``."""
    from informer_nas.nas_system.secrets import redact_text

    typer.echo(f"error: {redact_text(message)}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(config_error_code: int = 1) -> Iterator[None]:
    """Turn a NasError, or an OSError (a path that cannot be created, read or written),
    into one line on stderr and exit code 1 (no traceback); a ConfigError exits
    ``config_error_code``."""
    from informer_nas.errors import ConfigError, NasError

    try:
        yield
    except NasError as exc:
        logger.error("%s", exc)
        code = config_error_code if isinstance(exc, ConfigError) else 1
        fail(" ".join(str(exc).split()) or type(exc).__name__, code)
    except OSError as exc:
        logger.error("%s", exc)
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}; {_os_advice(exc)}")


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


def quoted(path: Path) -> str:
    """A path as it can be pasted into a shell (quoted when it holds spaces)."""
    return shlex.quote(str(path))
