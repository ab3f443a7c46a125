"""Durable session state: ``agent_state.json`` plus an append-only journal, and the lock.

``agent_state.json`` is a full snapshot (the DESIGN.md layout). Between snapshots,
``save_state`` appends one JSON line to ``agent_state.journal`` holding the small top-level
fields and only the run records that changed, so a save costs the same with 10 or 1,000
runs. ``load_state`` replays the journal onto the snapshot; ``compact_state`` (automatic
when the journal outgrows the snapshot) rewrites the snapshot and drops the journal.
Always read state through ``load_state``: the snapshot alone may lag the journal.

Change detection: a run record appended, replaced (``state.runs[i] = ...``), still
running, or among the last ``HOT_RUNS`` is compared in full. An older settled record
mutated in place is not noticed until the next compaction: replace it, or call
``compact_state``, to persist such an edit at once.

Allocating run ids and looking runs up are ``runs.py``'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import os
import shlex
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from informer_nas.errors import HistoryCorrupt
from informer_nas.informer.config import format_validation_error
from informer_nas.nas_system.atomic import atomic_write_text, fsync_directory
from informer_nas.nas_system.lock import LockHolder, now_iso, workspace_lock
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import ConfigChange, RoleUsage, RunRecord, RunStatus
from informer_nas.nas_system.secrets import redact_text

logger = logging.getLogger(__name__)

__all__ = [
    "AgentState", "IterationScratch", "LockHolder", "SessionInfo", "compact_state",
    "doctor_hint", "journal_path", "load_state", "now_iso", "save_state", "workspace_lock",
]

SCHEMA_VERSION = 1
HOT_RUNS = 16
_MIN_JOURNAL_BYTES = 64 * 1024


def journal_path(paths: WorkspacePaths) -> Path:
    """``agent_state.journal``: the state changes since the last snapshot."""
    return paths.state.with_suffix(".journal")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionInfo(_Model):
    """One ``nas run`` / ``nas resume`` invocation."""

    session_id: str
    started_at: str
    planner: str
    trace_file: str  # relative to the workspace, e.g. "traces/<session_id>.jsonl"
    usage: dict[str, RoleUsage] = Field(default_factory=dict)  # this session's, per role


class IterationScratch(_Model):
    """The iteration in progress: the candidate's changes and whether it was launched."""

    iteration: int
    changes: list[ConfigChange] = Field(default_factory=list)
    rationale: str = ""
    launched_run_id: str | None = None


@dataclass
class _SaveMark:
    """What this state object last wrote (private bookkeeping of the journal)."""

    root: Path
    generation: int
    snapshot_stat: tuple[int, int, int]
    snapshot_size: int
    journal_size: int
    runs: list[RunRecord]
    hot: dict[int, str] = field(default_factory=dict)  # run index -> its JSON


class AgentState(_Model):
    """The content of ``agent_state.json`` (see DESIGN.md)."""

    schema_version: int = SCHEMA_VERSION
    generation: int = 0  # snapshot number; journal lines of older snapshots are ignored
    preset: str = "paper"
    # The workspace's own ranges over the preset's (search_space.validate_narrowing), set at
    # creation and fixed for its life so that a study's space never changes.
    narrowing: dict[str, dict[str, Any]] = Field(default_factory=dict)
    iteration: int = 0  # completed iterations = the number of the one in progress
    max_iterations: int = 0
    planner: str = ""
    incumbent_run_id: str | None = None
    next_run_number: int = 0
    runs: list[RunRecord] = Field(default_factory=list)
    usage: dict[str, RoleUsage] = Field(default_factory=dict)
    sessions: list[SessionInfo] = Field(default_factory=list)
    current: IterationScratch | None = None


# What each live state object last wrote, kept outside the model so that equality, copies
# and dumps of a state never see it (a copy has no mark: its first save is a snapshot).
_MARKS: dict[int, _SaveMark] = {}
# Tools may run in worker threads; one writer at a time keeps journal lines and marks whole.
_WRITE_LOCK = threading.RLock()


def _mark_of(state: AgentState) -> _SaveMark | None:
    return _MARKS.get(id(state))


def _set_mark(state: AgentState, mark: _SaveMark) -> None:
    if id(state) not in _MARKS:
        weakref.finalize(state, _MARKS.pop, id(state), None)
    _MARKS[id(state)] = mark


def load_state(paths: WorkspacePaths) -> AgentState:
    """Read the snapshot and replay the journal.

    Raises:
        HistoryCorrupt: missing, unreadable, corrupt or newer-version state (never modified).
    """
    raw = _read_snapshot(paths)
    base_generation = raw.get("generation", 0)
    entries = [e for e in _read_journal(paths) if e.get("g") == base_generation]
    _replay(raw, entries)
    try:
        state = AgentState.model_validate(raw)
    except ValidationError as exc:
        raise HistoryCorrupt(
            f"{paths.state} does not match the state schema: {format_validation_error(exc)}; "
            f"it was left untouched; {doctor_hint(paths)}"
        ) from None
    _set_mark(state, _fresh_mark(paths, state, journal_size=_size(journal_path(paths))))
    return state


def doctor_hint(paths: WorkspacePaths) -> str:
    """The advice ending every corrupt-workspace message."""
    return f"run `nas doctor --workspace {shlex.quote(str(paths.root))}` to explain and repair"


def _read_snapshot(paths: WorkspacePaths) -> dict[str, Any]:
    path = paths.state
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HistoryCorrupt(
            f"{path} not found; if {paths.root} is a workspace, {doctor_hint(paths)}; "
            f"otherwise create one with `nas init`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryCorrupt(
            f"{path} cannot be read ({exc}); it was left untouched; {doctor_hint(paths)}"
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryCorrupt(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); it was left untouched; "
            f"{doctor_hint(paths)}"
        ) from None
    if not isinstance(raw, dict):
        raise HistoryCorrupt(
            f"{path} must hold a JSON object, got {type(raw).__name__}; {doctor_hint(paths)}"
        )
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise HistoryCorrupt(
            f"{path} has no integer schema_version (got {version!r}); {doctor_hint(paths)}"
        )
    if version > SCHEMA_VERSION:
        raise HistoryCorrupt(
            f"{path} has schema_version {version}, newer than this informer-nas supports "
            f"({SCHEMA_VERSION}); it was left untouched; upgrade informer-nas to read it"
        )
    return raw


def _read_journal(paths: WorkspacePaths) -> list[dict[str, Any]]:
    path = journal_path(paths)
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            # A crash tears an append before its closing newline (each entry is one write
            # ending in it): a bad line with its newline is damage, not a torn write.
            if number == len(lines):  # the last write was torn by a crash: never confirmed
                logger.warning("ignoring a torn last line in %s", path)
                break
            raise HistoryCorrupt(
                f"{path}:{number} is not a valid journal entry; it was left untouched; "
                f"{doctor_hint(paths)}"
            ) from None
        entries.append(entry)
    return entries


def _replay(raw: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    runs = raw.setdefault("runs", [])
    if not isinstance(runs, list):
        return  # the schema check that follows names the field
    index = {run.get("run_id"): i for i, run in enumerate(runs) if isinstance(run, dict)}
    for entry in entries:
        raw.update(entry.get("head", {}))
        for run in entry.get("runs", []):
            position = index.get(run.get("run_id"))
            if position is None:
                index[run.get("run_id")] = len(runs)
                runs.append(run)
            else:
                runs[position] = run


def save_state(paths: WorkspacePaths, state: AgentState) -> None:
    """Persist ``state`` durably: a journal line, or a full snapshot when due."""
    with _WRITE_LOCK:
        _save_locked(paths, state)


def _save_locked(paths: WorkspacePaths, state: AgentState) -> None:
    mark = _mark_of(state)
    if mark is None or mark.root != paths.root or _needs_compaction(paths, mark):
        compact_state(paths, state)
        return
    changed = _changed_runs(state, mark)
    if changed is None:
        compact_state(paths, state)
        return
    head = state.model_dump_json(exclude={"runs"})
    runs_json = ",".join(state.runs[i].model_dump_json() for i in changed)
    line = redact_text(f'{{"g":{mark.generation},"head":{head},"runs":[{runs_json}]}}\n')
    mark.journal_size = _append_line(journal_path(paths), line.encode("utf-8"))
    _remember(state, mark)


def compact_state(paths: WorkspacePaths, state: AgentState) -> None:
    """Write the full snapshot atomically, then drop the journal it supersedes."""
    with _WRITE_LOCK:
        _compact_locked(paths, state)


def _compact_locked(paths: WorkspacePaths, state: AgentState) -> None:
    previous = state.generation
    state.generation = previous + 1
    try:
        atomic_write_text(paths.state, redact_text(state.model_dump_json(indent=1)))
    except BaseException:
        state.generation = previous
        raise
    with contextlib.suppress(FileNotFoundError):
        journal_path(paths).unlink()
        fsync_directory(paths.root)
    _set_mark(state, _fresh_mark(paths, state, journal_size=0))


def _needs_compaction(paths: WorkspacePaths, mark: _SaveMark) -> bool:
    if mark.journal_size > max(_MIN_JOURNAL_BYTES, mark.snapshot_size):
        return True
    try:  # another state object (or process) rewrote the snapshot: ours is stale
        return _stat_key(paths.state) != mark.snapshot_stat
    except FileNotFoundError:
        return True


def _changed_runs(state: AgentState, mark: _SaveMark) -> list[int] | None:
    runs, old = state.runs, mark.runs
    if len(runs) < len(old):
        return None
    changed = set(range(len(old), len(runs)))
    if not all(map(operator.is_, runs, old)):
        for i, (run, before) in enumerate(zip(runs, old, strict=False)):
            if run is not before:
                if run.run_id != before.run_id:
                    return None  # reordered or removed: only a snapshot says that
                changed.add(i)
    for i, dumped in mark.hot.items():
        if i not in changed and runs[i].model_dump_json() != dumped:
            changed.add(i)
    return sorted(changed)


def _remember(state: AgentState, mark: _SaveMark) -> None:
    runs = state.runs
    hot = {i for i in mark.hot if runs[i].status is RunStatus.RUNNING}
    hot.update(range(max(0, len(runs) - HOT_RUNS), len(runs)))
    mark.runs = list(runs)
    mark.hot = {i: runs[i].model_dump_json() for i in sorted(hot)}


def _fresh_mark(paths: WorkspacePaths, state: AgentState, journal_size: int) -> _SaveMark:
    stat_key = _stat_key(paths.state)
    mark = _SaveMark(paths.root, state.generation, stat_key, stat_key[2], journal_size, [])
    mark.hot = {i: "" for i, run in enumerate(state.runs) if run.status is RunStatus.RUNNING}
    _remember(state, mark)
    return mark


def _stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _append_line(path: Path, data: bytes) -> int:
    is_new = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A crash tore the previous append: cut it so the new line starts clean.
            size = os.pread(fd, size, 0).rfind(b"\n") + 1
            os.ftruncate(fd, size)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if is_new:
        fsync_directory(path.parent)
    return size + len(data)
