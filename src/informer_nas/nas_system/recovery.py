"""Crash repair of a session's workspace, and the candidate clean-up the loop shares.

The session loop orders its writes so that a ``kill -9`` at any instant leaves a state
``repair_workspace`` can fix at the next start: a ``running`` run is marked interrupted
(its iteration is redone), a finished run without a verdict is returned to be evaluated
instead of retrained, ``config.py`` is restored from the incumbent's ``config_used.py``
after a torn accept, and a stale ``candidate.py`` is removed.
"""

from __future__ import annotations

import logging

from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.context import ToolContext, find_run
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.state import mark_interrupted

logger = logging.getLogger(__name__)


def _is_evaluable(record: RunRecord) -> bool:
    """A run found at start-up that the gate can judge (an interrupted one is redone)."""
    return record.status.is_finished and record.status is not RunStatus.INTERRUPTED


def remove_candidate(ctx: ToolContext) -> None:
    """Delete ``candidate.py`` (a rejected or abandoned candidate never stays)."""
    ctx.workspace.paths.candidate.unlink(missing_ok=True)


def discard_scratch(ctx: ToolContext) -> None:
    """Abandon the iteration in progress: it will be planned again."""
    ctx.state.current = None
    ctx.save()
    remove_candidate(ctx)


def restore_config(ctx: ToolContext, pending: RunRecord) -> None:
    """Undo a torn accept: ``config.py`` already holds the pending run's config, but the
    commit did not happen; put the incumbent's ``config_used.py`` back until it does.

    (Any other difference is a hand edit of ``config.py``, which is kept.)
    """
    paths = ctx.workspace.paths
    written = paths.run_dir(pending.run_id) / "config_used.py"
    incumbent = find_run(ctx, ctx.state.incumbent_run_id)
    if incumbent is None or not written.is_file():
        return  # without an incumbent the baseline is accepted again anyway
    if paths.config.read_text(encoding="utf-8") != written.read_text(encoding="utf-8"):
        return
    used = paths.run_dir(incumbent.run_id) / "config_used.py"
    if used.is_file():
        logger.warning("config.py held %s before its verdict was saved: restored %s",
                       pending.run_id, incumbent.run_id)
        atomic_write_text(paths.config, used.read_text(encoding="utf-8"))


def repair_workspace(ctx: ToolContext) -> RunRecord | None:
    """Repair what a crash left; return a finished run still waiting for its verdict."""
    mark_interrupted(ctx.state)
    current = ctx.state.current
    record = find_run(ctx, current.launched_run_id) if current else None
    if record is not None and record.verdict is None and _is_evaluable(record):
        restore_config(ctx, record)
        ctx.save()
        return record
    if current is not None:
        logger.warning("iteration %d was interrupted before its verdict; it will be redone",
                       current.iteration)
    discard_scratch(ctx)
    return None
