"""The options several commands share, their choices, and what turns them into values
(``--timeout``, ``--quiet``/``--verbose``, ``--workspace``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from informer_nas.cli.output import fail

if TYPE_CHECKING:
    from informer_nas.log_setup import Verbosity
    from informer_nas.nas_system.workspace import Workspace

DEFAULT_WORKSPACE = Path("nas-workspace")


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


class KeepCheckpoints(str, Enum):
    all = "all"
    incumbent = "incumbent"


WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace directory.", file_okay=False)
]
PresetOption = Annotated[Preset, typer.Option(help="Starting config for a new workspace.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Print every epoch.")]


def finite_timeout(value: float | None) -> float | None:
    """``--timeout``: ``min=1`` lets inf and nan through (1e400 is inf); a usage error."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number of seconds >= 1, got {value}; "
                                 "e.g. --timeout 600")
    return value


def verbosity_of(quiet: bool, verbose: bool) -> Verbosity:
    """``--quiet``/``--verbose`` as a verbosity; both at once is a usage error (exit 2)."""
    if quiet and verbose:
        fail("--quiet and --verbose exclude each other; pass at most one", code=2)
    return "quiet" if quiet else "verbose" if verbose else "normal"


def open_workspace(root: Path, validate: bool = True) -> Workspace:
    """The workspace at ``root``; ``validate`` False for the commands that only read its
    records (status, report), which work while a hand edit has broken config.py."""
    from informer_nas.nas_system.workspace import Workspace

    return Workspace.open(root, validate=validate)
