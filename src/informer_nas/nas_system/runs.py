"""The state's run records: allocating run ids, finding a run, the incumbent, and marking
runs a dead process left ``running`` as interrupted (persistence is ``state.py``'s)."""

from __future__ import annotations

from informer_nas.errors import ConfigError, HistoryCorrupt
from informer_nas.nas_system.lock import now_iso
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.state import AgentState

__all__ = ["find_run", "incumbent", "mark_interrupted", "new_run_id"]


def new_run_id(state: AgentState, paths: WorkspacePaths | None = None) -> str:
    """Allocate the next run id (``run_0000``, ...); ids are never reused.

    Save the state right after allocating, before creating the run directory. With
    ``paths``, an id whose directory exists (left by a crash before that save) is skipped.
    """
    taken = {run.run_id for run in state.runs}
    while True:
        run_id = f"run_{state.next_run_number:04d}"
        state.next_run_number += 1
        if run_id not in taken and (paths is None or not paths.run_dir(run_id).exists()):
            return run_id


def mark_interrupted(state: AgentState) -> list[RunRecord]:
    """Mark runs left ``running`` by a dead process as ``interrupted``; return them."""
    found = [run for run in state.runs if run.status is RunStatus.RUNNING]
    for run in found:
        run.status = RunStatus.INTERRUPTED
        run.status_reason = "the process died while this run was training"
        run.finished_at = run.finished_at or now_iso()
    return found


def find_run(state: AgentState, run_id: str) -> RunRecord:
    """The record of ``run_id``.

    Raises:
        ConfigError: unknown id (the message lists the known range).
    """
    for run in reversed(state.runs):
        if run.run_id == run_id:
            return run
    known = f"{state.runs[0].run_id}..{state.runs[-1].run_id}" if state.runs else "none yet"
    raise ConfigError(f"unknown run id {run_id!r}; known runs: {known}")


def incumbent(state: AgentState) -> RunRecord | None:
    """The incumbent's record, or None before the first successful run.

    Raises:
        HistoryCorrupt: ``incumbent_run_id`` names a run that is not in the state.
    """
    if state.incumbent_run_id is None:
        return None
    try:
        return find_run(state, state.incumbent_run_id)
    except ConfigError:
        raise HistoryCorrupt(
            f"incumbent_run_id {state.incumbent_run_id!r} is not among the runs; "
            f"run `nas doctor --workspace <workspace> --repair` to explain and repair"
        ) from None
