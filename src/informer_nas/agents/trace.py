"""Session traces: ``traces/<session>.jsonl``, one JSON object per line, flushed per line.

A trace holds a header (settings, the starting config and state), every model response
per role with a digest of the request that produced it, every tool call with its
arguments and result, every training outcome, and the session events. Secrets never
reach it: every string is scrubbed of the values of the API-key variables.

Digests are computed on a canonical form of the request: the workspace path is replaced
by ``<workspace>`` and volatile fields (timings, timestamps, the device) are dropped from
JSON tool outputs, so that a replay into another directory, on another day, digests the
same when it asks the same thing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from informer_nas.errors import HistoryCorrupt
from informer_nas.nas_system.executor import EventCallback, TrainingExecutor, TrainOutcome
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.secrets import REDACTED as REDACTED
from informer_nas.nas_system.secrets import SECRET_ENV_NAMES as SECRET_ENV_NAMES
from informer_nas.nas_system.secrets import scrub as scrub
from informer_nas.nas_system.secrets import secret_values as secret_values

logger = logging.getLogger(__name__)

# What a trace's requests were recorded against: bump it whenever what a model is sent changes
# (prompts, tool outputs), so that a replay of an older trace says why it diverges.
# 2: the planner's tools and the hybrid prompt of 2026-11-27 (session 12).
TRACE_VERSION = 2
# JSON keys whose values change from run to run without changing what was decided.
VOLATILE_KEYS = frozenset({
    "seconds", "train_seconds", "samples_per_second", "started_at", "finished_at",
    "timestamp", "time", "device", "elapsed", "elapsed_s", "wall_s",
})
WORKSPACE_TOKEN = "<workspace>"


def to_jsonable(value: Any) -> Any:
    """A JSON-compatible copy of SDK items (pydantic models, dataclasses, dicts)."""
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json", exclude_none=True))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def canonical(value: Any, root: str) -> Any:
    """The digest form of a value: workspace path replaced, volatile keys dropped.

    Strings holding JSON objects (tool outputs) are parsed and canonicalised too.
    """
    if isinstance(value, str):
        text = value.replace(root, WORKSPACE_TOKEN) if root else value
        stripped = text.strip()
        if stripped[:1] in ("{", "[") and len(stripped) > 1:
            try:
                return canonical(json.loads(stripped), "")
            except ValueError:
                return text
        return text
    if isinstance(value, Mapping):
        return {str(k): canonical(v, root) for k, v in sorted(value.items())
                if k not in VOLATILE_KEYS}
    if isinstance(value, list | tuple):
        return [canonical(v, root) for v in value]
    return value


def replace_in_strings(value: Any, old: str, new: str) -> Any:
    """``value`` (JSON-like) with ``old`` replaced by ``new`` in every string in it."""
    if isinstance(value, str):
        return value.replace(old, new) if old else value
    if isinstance(value, Mapping):
        return {k: replace_in_strings(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [replace_in_strings(v, old, new) for v in value]
    return value


def digest(value: Any, root: str = "") -> str:
    """A short SHA-256 of the canonical JSON of ``value``."""
    text = json.dumps(canonical(to_jsonable(value), root), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def item_label(item: Any) -> str:
    """A short human name of an input item, for divergence messages."""
    data = to_jsonable(item)
    if not isinstance(data, dict):
        return type(item).__name__
    kind = str(data.get("type") or data.get("role") or "item")
    if kind == "function_call":
        return f"function_call {data.get('name')} ({data.get('call_id')})"
    if kind == "function_call_output":
        return f"function_call_output ({data.get('call_id')})"
    return f"{kind} {data.get('role', '')}".strip()


def request_parts(instructions: str | None, input_items: str | list[Any], tools: Sequence[Any],
                  output_schema: Any, root: str) -> dict[str, Any]:
    """Digests of each part of a model request (what a replay compares)."""
    items = [input_items] if isinstance(input_items, str) else list(input_items)
    tool_specs = sorted(
        (getattr(t, "name", str(t)), to_jsonable(getattr(t, "params_json_schema", {})))
        for t in tools
    )
    schema = output_schema.json_schema() if output_schema is not None else None
    return {
        "instructions": digest(instructions or "", root),
        "tools": digest(tool_specs, root),
        "output_schema": digest(schema, root),
        "items": [digest(item, root) for item in items],
        "labels": [item_label(item) for item in items],
    }


def combined_digest(parts: Mapping[str, Any]) -> str:
    """One digest over the parts (labels excluded)."""
    return digest({k: v for k, v in parts.items() if k != "labels"})


class TraceRecorder:
    """Appends JSON lines to a trace file, scrubbing secrets, flushing after each line.

    Args:
        path: the trace file (``traces/<session>.jsonl``); its directory is created.
        root: the workspace root, recorded so that digests can replace it.
        secrets: values to scrub (default: from the environment).
    """

    def __init__(self, path: Path, root: Path, secrets: Sequence[str] | None = None) -> None:
        self.path = path
        self.root = str(root.resolve())
        self.secrets = tuple(secrets) if secrets is not None else secret_values()
        self._started = time.monotonic()
        self._steps: dict[str, int] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record ``{"kind": kind, "t": seconds since start, **fields}``."""
        if self._file is None:
            return
        record = {"kind": kind, "t": round(time.monotonic() - self._started, 4), **fields}
        line = json.dumps(scrub(to_jsonable(record), self.secrets), ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()

    def next_step(self, role: str) -> int:
        """The 0-based index of the next model call of ``role`` in this trace."""
        step = self._steps.get(role, 0)
        self._steps[role] = step + 1
        return step

    def steps_taken(self, role: str) -> int:
        """How many model calls of ``role`` this trace has recorded."""
        return self._steps.get(role, 0)

    def event(self, event: Mapping[str, Any]) -> None:
        """Record a session event (progress events are too many and are skipped)."""
        if event.get("event") != "progress":
            self.write("event", **{k: v for k, v in event.items() if k != "event"},
                       name=event.get("event"))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def session_traces(path: Path) -> list[Path]:
    """The traces ``path`` names: itself for a file; for a workspace, or a folder of traces,
    every session's trace, oldest first (their names start with the start time).

    Raises:
        HistoryCorrupt: a folder that holds no trace.
    """
    if not path.is_dir():
        return [path]
    is_workspace = (path / "traces").is_dir()
    traces = WorkspacePaths(path).trace_files() if is_workspace else sorted(path.glob("*.jsonl"))
    if not traces:
        raise HistoryCorrupt(f"{path}: no traces/<session>.jsonl in it; pass a workspace that "
                             "has run a session, or a trace file")
    return traces


def read_trace(path: Path) -> list[dict[str, Any]]:
    """Read a trace; a truncated last line (a crash while writing) is dropped.

    Raises:
        HistoryCorrupt: the file is missing or unreadable, has no header, or a line before
            the last is not a JSON object.
    """
    lines = _trace_text(path).splitlines()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                logger.warning("%s: last line truncated (crash while writing); ignored", path)
                break
            raise HistoryCorrupt(f"{path}:{number}: not a JSON line; the trace is corrupt "
                                 "and cannot be replayed") from None
        if not isinstance(record, dict):
            raise HistoryCorrupt(f"{path}:{number}: not a JSON object; the trace is corrupt "
                                 "and cannot be replayed")
        records.append(record)
    if not records:  # the session was killed before its header was whole
        raise HistoryCorrupt(f"{path}: no header line: its session was stopped as it started "
                             "and recorded nothing, so there is nothing to replay; replay "
                             "another traces/<session>.jsonl (this file may be deleted)")
    if records[0].get("kind") != "header":
        raise HistoryCorrupt(f"{path}: no header line; it is not a session trace; pass a "
                             "traces/<session>.jsonl file of a workspace")
    return records


def read_trace_header(path: Path) -> dict[str, Any]:
    """The first line of a trace only: a session's settings survive damage further down.

    Raises:
        HistoryCorrupt: the file is missing or unreadable, or its first line is no header.
    """
    first = _trace_text(path).partition("\n")[0]
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("kind") != "header":
        raise HistoryCorrupt(f"{path}:1: not a trace header")
    return header


def _trace_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HistoryCorrupt(f"trace {path} not found; list the traces/ folder of the "
                             "workspace for the session files") from None
    except UnicodeDecodeError:
        raise HistoryCorrupt(f"{path}: not UTF-8 text; it is not a session trace") from None
    except OSError as exc:
        raise HistoryCorrupt(f"{path}: cannot be read ({exc.strerror}); check the path and "
                             "its permissions") from None


class RecordingExecutor(TrainingExecutor):
    """Wraps an executor: each finished training goes into the trace for replay.

    What is recorded is what the session and the tools read back: the outcome, the epochs
    of ``history.json`` and the text of ``config_used.py``. An interrupted training is not
    recorded: its iteration is redone.
    """

    def __init__(self, inner: TrainingExecutor, recorder: TraceRecorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.reads_data = inner.reads_data

    def run(self, config_path: Path, run_dir: Path, seed: int, timeout_s: float | None,
            on_event: EventCallback | None = None,
            prune_thresholds: Mapping[int, float] | None = None) -> TrainOutcome:
        config_text = config_path.read_text(encoding="utf-8")
        outcome = self.inner.run(config_path, run_dir, seed, timeout_s, on_event,
                                 prune_thresholds)
        self.recorder.write(
            "train", run_dir=_relative(run_dir, self.recorder.root), seed=seed,
            config_digest=digest(config_text),
            # A failure's reason may name a workspace file: recorded with the root as a token,
            # so that a replay elsewhere tells the model the same words about its own files.
            outcome=replace_in_strings(
                {"status": outcome.status.value, "reason": outcome.reason,
                 "metrics": outcome.metrics, "seconds": outcome.seconds,
                 "exit_code": outcome.exit_code}, self.recorder.root, WORKSPACE_TOKEN),
            history=_read_json(run_dir / "history.json"),
            config_used=_read_text(run_dir / "config_used.py"),
        )
        return outcome


def _relative(path: Path, root: str) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None
