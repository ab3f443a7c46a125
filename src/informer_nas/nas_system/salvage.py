"""Rebuild ``AgentState`` from whatever survived: the snapshot, its journal, the run dirs.

``nas doctor --repair`` calls ``rebuild_state`` when ``load_state`` refuses the state. The
sources are merged so that no completed run is dropped:

1. the snapshot (``agent_state.json``), parsed whole, or, when torn or garbled, field by
   field: each top-level scalar and each complete run object that can still be decoded;
2. every readable line of the journal of the snapshot's generation, replayed in order
   (a garbled line is skipped, the lines after it still count);
3. every run directory with a ``metrics.json`` that no record mentions (a finished run
   whose record was lost) becomes a record again, marked as rebuilt.

Fields and records that fail the schema are dropped from the result but stay in the backup
that the doctor writes before replacing anything. Pure: nothing here writes a file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from informer_nas.errors import ConfigError
from informer_nas.informer.config import read_config_literal
from informer_nas.informer.presets import PRESETS, preset_config
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.state import SCHEMA_VERSION, AgentState, journal_path
from informer_nas.plurals import counted

RUN_DIR_PATTERN = re.compile(r"run_(\d+)")
_SCALAR = r'(-?\d+|"(?:[^"\\]|\\.)*"|null|true|false)'
_METRIC_KEYS = ("val_mse", "val_mae", "test_mse", "test_mae")


@dataclass
class Salvage:
    """A rebuilt state and what happened on the way (one line per note)."""

    state: AgentState
    notes: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # run ids rebuilt from run directories


def run_number(name: str) -> int | None:
    """``run_0012`` -> 12; None for any other name."""
    match = RUN_DIR_PATTERN.fullmatch(name)
    return int(match.group(1)) if match else None


def run_dir_ids(paths: WorkspacePaths) -> list[str]:
    """The ``runs/run_NNNN`` directories, in run-number order."""
    if not paths.runs.is_dir():
        return []
    found = [p.name for p in paths.runs.iterdir() if p.is_dir() and run_number(p.name) is not None]
    return sorted(found, key=lambda name: run_number(name) or 0)


def rebuild_state(paths: WorkspacePaths) -> Salvage:
    """Merge the snapshot, the journal and the run directories into a valid state."""
    notes: list[str] = []
    head, runs = salvage_snapshot(paths.state, notes)
    generation = head.get("generation")
    entries = salvage_journal(paths, generation if isinstance(generation, int) else None, notes)
    for entry in entries:
        head.update(entry.get("head") or {})
        runs.extend(r for r in entry.get("runs") or [] if isinstance(r, dict))
    if "preset" not in head:
        _recover_preset(paths, head, notes)
    state = _validated_state(head, runs, notes)
    adopted = _adopt_run_dirs(paths, state, notes)
    _settle_head(paths, state, adopted, notes)
    return Salvage(state, notes, adopted)


def _recover_preset(paths: WorkspacePaths, head: dict[str, Any], notes: list[str]) -> None:
    """The search space (preset, narrowing) of a state that lost it: from the newest trace
    header that holds it, else the preset whose window caps ``config.py`` has."""
    for trace in reversed(paths.trace_files()):
        try:
            with trace.open("rb") as file:
                recorded = json.loads(file.readline()).get("state")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(recorded, dict) and isinstance(recorded.get("preset"), str):
            head["preset"] = recorded["preset"]
            if recorded.get("narrowing"):
                head["narrowing"] = recorded["narrowing"]
            notes.append(f"preset {head['preset']!r} and the search's narrowing read from "
                         f"traces/{trace.name}")
            return
    try:
        training = read_config_literal(paths.config)["training"]
        caps = (training.get("max_train_windows"), training.get("max_eval_windows"))
    except (ConfigError, KeyError, TypeError, AttributeError):
        return
    matches = [name for name in PRESETS if caps == (
        preset_config(name).training.max_train_windows,
        preset_config(name).training.max_eval_windows)]
    if len(matches) == 1:
        head["preset"] = matches[0]
        notes.append(f"preset {matches[0]!r}: the one whose window caps config.py has")


def snapshot_version(path: Path) -> int | None:
    """The snapshot's ``schema_version`` if it can be read, else None."""
    try:
        version = json.loads(path.read_bytes()).get("schema_version")
    except (OSError, ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def split_json_lines(data: bytes) -> tuple[bytes, bytes, list[int]]:
    """A JSON-lines file as (its complete lines, a torn last line, the garbled line numbers).

    The torn last line is the text after the last newline when it is not JSON (a crash
    while appending), else empty; the garbled lines are complete lines that are not JSON.
    """
    cut = data.rfind(b"\n") + 1
    body, tail = data[:cut], data[cut:]
    garbled = [number for number, line in enumerate(body.split(b"\n"), start=1)
               if line.strip() and not _is_json(line)]
    if not tail.strip() or _is_json(tail):
        body, tail = data, b""
    return body, tail, garbled


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def salvage_snapshot(path: Path, notes: list[str]) -> tuple[dict[str, Any], list[Any]]:
    """The snapshot's top-level fields (without runs) and its run objects, as far as readable."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        notes.append(f"{path.name} is missing")
        return {}, []
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if isinstance(raw, dict):
        runs = raw.pop("runs", [])
        return raw, runs if isinstance(runs, list) else []
    head, runs = _partial_snapshot(text)
    notes.append(f"{path.name} is not valid JSON: recovered {len(head)} top-level fields and "
                 f"{len(runs)} complete run records from it")
    return head, runs


def _partial_snapshot(text: str) -> tuple[dict[str, Any], list[Any]]:
    runs_at = re.search(r'"runs"\s*:\s*\[', text)
    before = text[: runs_at.start()] if runs_at else text
    head: dict[str, Any] = {}
    for name in AgentState.model_fields:
        if name == "runs":
            continue
        match = re.search(rf'"{name}"\s*:\s*{_SCALAR}', before)
        if match:
            head[name] = json.loads(match.group(1))
        else:
            value = _decode_after(text, name)
            if value is not None:
                head[name] = value
    runs = _decode_elements(text, runs_at.end()) if runs_at else []
    return head, runs


def _decode_after(text: str, key: str) -> Any:
    """The JSON value after the last ``"key":`` (objects and lists), or None."""
    matches = list(re.finditer(rf'"{key}"\s*:\s*(?=[{{\[])', text))
    if not matches:
        return None
    try:
        return json.JSONDecoder().raw_decode(text, matches[-1].end())[0]
    except ValueError:
        return None


def _decode_elements(text: str, start: int) -> list[Any]:
    """The complete JSON values of an array starting at ``start``; stops at the first torn one."""
    decoder, position, found = json.JSONDecoder(), start, list[Any]()
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return found
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return found
        found.append(value)


def salvage_journal(
    paths: WorkspacePaths, generation: int | None, notes: list[str]
) -> list[dict[str, Any]]:
    """The readable journal entries of ``generation`` (None: the newest one present)."""
    path = journal_path(paths)
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    entries, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("g"), int):
            entries.append(entry)
        else:
            skipped += 1
    if skipped:
        notes.append(f"{path.name}: {counted(skipped, 'unreadable line')} skipped")
    if generation is None and entries:
        generation = max(entry["g"] for entry in entries)
    return [entry for entry in entries if entry["g"] == generation]


def _validated_state(head: dict[str, Any], runs: list[Any], notes: list[str]) -> AgentState:
    kept: dict[str, Any] = {}
    for name, value in head.items():
        if name not in AgentState.model_fields or name == "runs":
            continue
        try:
            AgentState.model_validate({name: value})
        except ValidationError:
            notes.append(f"field {name} was invalid and is reset to its default")
            continue
        kept[name] = value
    kept["schema_version"] = SCHEMA_VERSION
    if "preset" not in kept:
        notes.append("the preset is unknown: set to 'paper' (the widest search space)")
    state = AgentState.model_validate(kept)
    by_id: dict[str, RunRecord] = {}
    for raw in runs:
        try:
            record = RunRecord.model_validate(raw)
        except ValidationError:
            run_id = raw.get("run_id") if isinstance(raw, dict) else None
            notes.append(f"run record {run_id or '?'} failed the schema; rebuilt from its run "
                         f"directory if it has one (the backup keeps the original)")
            continue
        by_id[record.run_id] = record  # a later version (journal) replaces an earlier one
    state.runs = sorted(by_id.values(), key=lambda r: (run_number(r.run_id) or 0, r.run_id))
    return state


def record_from_run_dir(paths: WorkspacePaths, run_id: str, iteration: int) -> RunRecord | None:
    """A record rebuilt from ``runs/<run_id>/metrics.json``; None if it has none usable."""
    try:
        metrics = json.loads((paths.run_dir(run_id) / "metrics.json").read_text("utf-8"))
        status = RunStatus(metrics.get("status"))
    except (OSError, ValueError, AttributeError):
        return None
    if status is RunStatus.RUNNING:
        return None
    values = {key: finite_number(metrics.get(key)) for key in _METRIC_KEYS}
    seed = metrics.get("seed")
    reason = str(metrics.get("reason") or "")
    return RunRecord(
        run_id=run_id, iteration=iteration, status=status, **values,
        status_reason=f"{reason}; rebuilt by nas doctor from runs/{run_id}/metrics.json".lstrip(
            "; "),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else 0,
        seconds=finite_number(metrics.get("train_seconds")) or 0.0,
    )


def finite_number(value: object) -> float | None:
    """A JSON value as a finite float, else None (booleans, NaN and infinities too)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value) if abs(value) != float("inf") else None
    return None


def _adopt_run_dirs(paths: WorkspacePaths, state: AgentState, notes: list[str]) -> list[str]:
    known = {run.run_id for run in state.runs}
    verdicts = trace_verdicts(paths)
    adopted: list[str] = []
    judged: list[str] = []
    for run_id in run_dir_ids(paths):
        if run_id in known:
            continue
        number = run_number(run_id) or 0
        earlier = [r.iteration for r in state.runs if (run_number(r.run_id) or 0) < number]
        record = record_from_run_dir(paths, run_id, max(earlier, default=0) + 1)
        if record is None:
            continue  # never finished: an orphan, left alone
        if run_id in verdicts:
            judged_record = _with_verdict(record, verdicts[run_id])
            if judged_record is not None:
                record = judged_record
                judged.append(run_id)
        state.runs.append(record)
        state.runs.sort(key=lambda r: (run_number(r.run_id) or 0, r.run_id))
        adopted.append(run_id)
    if adopted:
        unjudged = len(adopted) - len(judged)
        how = (f"iterations and verdicts of {len(judged)} from the session traces"
               if judged else "")
        rest = f"iteration numbers estimated, no verdict for {unjudged}" if unjudged else ""
        notes.append(f"rebuilt {counted(len(adopted), 'run record')} from their run directories: "
                     f"{', '.join(adopted)} ({'; '.join(part for part in (how, rest) if part)})")
    return adopted


def trace_verdicts(paths: WorkspacePaths) -> dict[str, dict[str, Any]]:
    """The last ``verdict`` event of each run in the session traces (``traces/*.jsonl``, in
    the order their names sort: their start times); unreadable lines are skipped."""
    found: dict[str, dict[str, Any]] = {}
    for trace in paths.trace_files():
        try:
            lines = trace.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (isinstance(entry, dict) and entry.get("kind") == "event"
                    and entry.get("name") == "verdict" and isinstance(entry.get("run_id"), str)):
                found[entry["run_id"]] = entry
    return found


def _with_verdict(record: RunRecord, event: dict[str, Any]) -> RunRecord | None:
    """``record`` with the iteration and the verdict a trace's ``verdict`` event recorded
    (None when the event does not validate: the record stays without a verdict)."""
    verdict = {"iteration": event.get("iteration"), "verdict": event.get("verdict"),
               "accepted": event.get("accepted"), "decided_by": event.get("decided_by"),
               "verdict_reason": event.get("reason") or "", "changes": event.get("changes") or [],
               "step_type": event.get("step_type")}
    try:
        return RunRecord.model_validate({**record.model_dump(), **verdict})
    except ValidationError:
        return None


def _settle_head(
    paths: WorkspacePaths, state: AgentState, adopted: list[str], notes: list[str]
) -> None:
    """Make the counters, the incumbent and the iteration scratch agree with the runs."""
    ids = {run.run_id for run in state.runs}
    numbers = [run_number(r) or 0 for r in [*ids, *run_dir_ids(paths)]]
    state.next_run_number = max([state.next_run_number, *(n + 1 for n in numbers)])
    if state.incumbent_run_id not in ids:
        state.incumbent_run_id = _incumbent_by_config(paths, state)
        if state.incumbent_run_id:
            notes.append(f"incumbent {state.incumbent_run_id}: the run whose config_used.py "
                         f"equals config.py")
    current = state.current
    pending = current.launched_run_id if current else None
    spent = [r.iteration for r in state.runs if r.run_id != pending
             and (r.verdict is not None or r.accepted or r.run_id in adopted)]
    state.iteration = max([state.iteration, *spent])
    state.max_iterations = max(state.max_iterations, state.iteration)
    if current is not None and (current.iteration <= state.iteration
                                or (pending is not None and pending not in ids)):
        state.current = None
        notes.append("the iteration in progress was dropped; it will be planned again")
    journal_g = [e.get("g", 0) for e in salvage_journal(paths, None, [])]
    state.generation = max([state.generation, *journal_g])


def _incumbent_by_config(paths: WorkspacePaths, state: AgentState) -> str | None:
    try:
        config = paths.config.read_bytes()
    except OSError:
        return None
    for run in reversed(state.runs):
        used = paths.run_dir(run.run_id) / "config_used.py"
        if run.status.is_success and used.is_file() and used.read_bytes() == config:
            run.accepted = True
            return run.run_id
    return None
