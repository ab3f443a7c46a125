"""The ``replay`` brain: a recorded trace's model responses, in order, per role.

Each request is digested as when it was recorded; if it differs, ``ReplayDivergence``
names the role, the step and the part that differs (instructions, tools, output schema or
the first differing input item). Where the recorded call failed, the same kind of failure
is raised at the same step. ``ReplayExecutor`` plays the recorded trainings back (writing
the files the tools read) so a replay needs no training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.exceptions import AgentsException, ModelBehaviorError
from agents.items import ModelResponse, TResponseOutputItem
from agents.usage import Usage
from pydantic import TypeAdapter

from informer_nas.agents.endpoint import EndpointProtocolError
from informer_nas.agents.provider import ModelRequest, NonStreamingModel
from informer_nas.agents.trace import (
    WORKSPACE_TOKEN,
    combined_digest,
    digest,
    replace_in_strings,
)
from informer_nas.errors import ReplayDivergence
from informer_nas.nas_system.executor import EventCallback, TrainingExecutor, TrainOutcome
from informer_nas.nas_system.records import RunStatus
from informer_nas.plurals import counted

_OUTPUT_ITEM: TypeAdapter[TResponseOutputItem] = TypeAdapter(TResponseOutputItem)


def describe_difference(role: str, step: int, recorded: Mapping[str, Any],
                        replayed: Mapping[str, Any]) -> str:
    """What differs between a recorded and a replayed request, in one line."""
    where = f"{role} step {step}"
    for part, words in (("instructions", "system instructions (prompt)"),
                        ("tools", "tool definitions"), ("output_schema", "output schema")):
        if recorded.get(part) != replayed.get(part):
            return f"{where}: the {words} differ from the recorded session"
    old, new = list(recorded.get("items", [])), list(replayed.get("items", []))
    labels = list(replayed.get("labels", [])) or list(recorded.get("labels", []))
    for index, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            label = labels[index] if index < len(labels) else "item"
            return f"{where}: input item {index} ({label}) differs from the recorded one"
    return (f"{where}: the input has {counted(len(new), 'item')} where the recorded one had "
            f"{len(old)}")


class ReplayedEndpointError(EndpointProtocolError):
    """A recorded endpoint failure, raised again at the step where it happened."""


class StepDivergence(ReplayDivergence):
    """A model request that does not match the recorded one at ``step`` of ``role``."""

    def __init__(self, role: str, step: int, message: str) -> None:
        super().__init__(message)
        self.role = role
        self.step = step


def replayed_failure(role: str, step: int, record: Mapping[str, Any]) -> Exception:
    """The failure a ``model_error`` record describes, to raise again (``failure_kind``)."""
    message = str(record.get("error", ""))
    # Traces recorded before failures had a kind held only unavailable endpoints.
    kind = record.get("failure", "unavailable")
    if kind == "unavailable":
        return ReplayedEndpointError(message)
    if kind == "model_behavior":
        return ModelBehaviorError(message)
    if kind == "agents":
        return AgentsException(message)
    return ReplayDivergence(f"{role} step {step}: the recorded session's model call failed "
                            f"here ({record.get('error_type')}: {message}), which ended it")


class ReplayModel(NonStreamingModel):
    """Returns the recorded responses of one role, checking each request's digest; where
    the recorded call failed instead of answering, raises the same kind of failure.

    Args:
        role: ``planner`` or ``evaluator``.
        records: that role's ``model`` records of the trace, in order.
        root: the replay workspace's root (replaced in digests like the recorded one).
        errors: that role's ``model_error`` records (each names the step it came before).
    """

    def __init__(self, role: str, records: Sequence[Mapping[str, Any]], root: str,
                 errors: Sequence[Mapping[str, Any]] = ()) -> None:
        self.role = role
        self.records = list(records)
        self.root = root
        self.position = 0
        self.errors: dict[int, list[Mapping[str, Any]]] = {}
        for error in errors:
            step = error.get("step")
            if isinstance(step, int):  # a garbled record is left out (the replay diverges)
                self.errors.setdefault(step, []).append(error)

    @property
    def remaining(self) -> int:
        return len(self.records) - self.position

    async def respond(self, request: ModelRequest) -> ModelResponse:
        step = self.position
        if self.errors.get(step):
            raise replayed_failure(self.role, step, self.errors[step].pop(0))
        if step >= len(self.records):
            raise StepDivergence(
                self.role, step, f"{self.role} step {step}: the replay asked for more model "
                                 f"responses than the {len(self.records)} recorded")
        recorded = self.records[step]
        parts = request.parts(self.root)
        if combined_digest(parts) != recorded.get("digest"):
            raise StepDivergence(self.role, step, describe_difference(
                self.role, step, recorded.get("parts", {}), parts))
        self.position += 1
        usage = recorded.get("usage", {})
        return ModelResponse(
            output=[_OUTPUT_ITEM.validate_python(item) for item in recorded.get("output", [])],
            usage=Usage(requests=int(usage.get("requests", 1)),
                        input_tokens=int(usage.get("input_tokens", 0)),
                        output_tokens=int(usage.get("output_tokens", 0))),
            response_id=recorded.get("response_id"),
        )


class ReplayExecutor(TrainingExecutor):
    """Plays the recorded trainings back in order, writing their files into the run dir."""

    reads_data = False  # the recorded results stand for the trainings

    def __init__(self, records: Sequence[Mapping[str, Any]], root: str = "") -> None:
        self.records = list(records)
        self.position = 0
        self.root = root  # the replay workspace's, for the recorded WORKSPACE_TOKEN

    @property
    def remaining(self) -> int:
        return len(self.records) - self.position

    def run(self, config_path: Path, run_dir: Path, seed: int, timeout_s: float | None,
            on_event: EventCallback | None = None,
            prune_thresholds: Mapping[int, float] | None = None) -> TrainOutcome:
        number = self.position
        if number >= len(self.records):
            raise ReplayDivergence(f"training {number}: the replay launched more trainings "
                                   f"than the {len(self.records)} recorded")
        record = self.records[number]
        config_digest = digest(config_path.read_text(encoding="utf-8"))
        if config_digest != record.get("config_digest") or seed != record.get("seed"):
            raise ReplayDivergence(
                f"training {number} ({record.get('run_dir')}): the replay trained another "
                f"config or seed (seed {seed}, recorded {record.get('seed')})"
            )
        self.position += 1
        record = replace_in_strings(record, WORKSPACE_TOKEN, self.root)
        _write_files(run_dir, record)
        outcome = record.get("outcome") or {}
        metrics = dict(outcome.get("metrics") or {})
        if on_event is not None and metrics:
            on_event({"event": "done", **metrics})
        return TrainOutcome(RunStatus(outcome.get("status", "crashed")),
                            str(outcome.get("reason", "")), metrics,
                            float(outcome.get("seconds", 0.0)), outcome.get("exit_code"))


def _write_files(run_dir: Path, record: Mapping[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = (record.get("outcome") or {}).get("metrics")
    if metrics:
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    if record.get("history") is not None:
        (run_dir / "history.json").write_text(json.dumps(record["history"]), encoding="utf-8")
    if record.get("config_used") is not None:
        (run_dir / "config_used.py").write_text(record["config_used"], encoding="utf-8")
