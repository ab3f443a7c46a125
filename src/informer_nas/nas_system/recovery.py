"""Crash repair of a session's workspace, and the candidate clean-up the loop shares.

The session loop orders its writes so that a ``kill -9`` at any instant leaves a state
``repair_workspace`` can fix at the next start: a ``running`` run is marked interrupted
(its iteration is redone) unless its training finished (its ``metrics.json`` says ok: the
result is kept), a finished run without a verdict is returned to be evaluated instead of
retrained, ``config.py`` is restored from the incumbent's ``config_used.py``
after a torn accept, and a stale ``candidate.py`` is removed.
"""

from __future__ import annotations

import logging
from typing import Any

from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.context import ToolContext, find_run
from informer_nas.nas_system.executor import read_metrics
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.runs import mark_interrupted
from informer_nas.nas_system.salvage import finite_number
from informer_nas.nas_system.state import now_iso

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


def finished_metrics(paths: WorkspacePaths, record: RunRecord) -> dict[str, Any] | None:
    """The metrics of a run recorded as unfinished whose training did finish ok (else None)."""
    if record.status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED) or record.verdict:
        return None
    metrics, _ = read_metrics(paths.run_dir(record.run_id))
    if metrics is None or metrics.get("status") != "ok" or metrics.get("seed", record.seed) != (
            record.seed):
        return None
    return metrics


def adopt_finished_training(ctx: ToolContext, record: RunRecord) -> bool:
    """Keep the result of a training that finished before the session died.

    The trainer writes ``metrics.json`` last; a session killed (or interrupted) between that
    and saving the run's record would otherwise redo the whole training. A run still
    ``running`` or ``interrupted`` whose ``metrics.json`` says ok, for the run's seed, gets
    that result.
    """
    metrics = finished_metrics(ctx.workspace.paths, record)
    if metrics is None:
        return False
    record.status = RunStatus.OK
    record.status_reason = "finished before the session stopped; its result was kept"
    for key in ("val_mse", "val_mae", "test_mse", "test_mae"):
        setattr(record, key, finite_number(metrics.get(key)))
    record.seconds = round(finite_number(metrics.get("train_seconds")) or 0.0, 3)
    record.finished_at = now_iso()
    logger.warning("%s finished before the session stopped: its result is kept",
                   record.run_id)
    return True


def repair_workspace(ctx: ToolContext) -> RunRecord | None:
    """Repair what a crash left; return a finished run still waiting for its verdict."""
    current = ctx.state.current
    record = find_run(ctx, current.launched_run_id) if current else None
    if record is not None:
        adopt_finished_training(ctx, record)
    mark_interrupted(ctx.state)
    if record is not None and record.verdict is None and _is_evaluable(record):
        restore_config(ctx, record)
        ctx.save()
        return record
    if current is not None:
        logger.warning("iteration %d was interrupted before its verdict; it will be redone",
                       current.iteration)
    discard_scratch(ctx)
    return None
