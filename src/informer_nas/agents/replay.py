"""``replay_trace``: feed a recorded session back through the same agents and tools.

The replay starts a fresh workspace from the trace's header (the starting config and state;
from the trace's own workspace, when it is there, the earlier runs' files and the study's
journal as the session found it), answers every model request with the recorded response
(checking its digest) and, unless ``retrain`` is asked, every training with the recorded
outcome. It then compares the iterations (each verdict, and each iteration that ended without
a candidate) and the final ``config.py`` with the recorded ones and reports identical or the
first divergence.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from informer_nas.agents.brains.replay import ReplayExecutor, ReplayModel, StepDivergence
from informer_nas.agents.policy import PolicyEvaluator
from informer_nas.agents.provider import Binding
from informer_nas.agents.trace import TRACE_VERSION, read_trace
from informer_nas.agents.wiring import BrainSpec, build_brain
from informer_nas.errors import ConfigError, HistoryCorrupt, ReplayDivergence
from informer_nas.informer.config import (
    format_validation_error,
    literal_from_source,
    validate_config,
)
from informer_nas.nas_system.atomic import atomic_write_bytes, atomic_write_text
from informer_nas.nas_system.executor import TrainingExecutor
from informer_nas.nas_system.gate import GateThresholds
from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
from informer_nas.nas_system.pruning import PruningSettings
from informer_nas.nas_system.search_space import study_space
from informer_nas.nas_system.session import run_session
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import AgentState, compact_state
from informer_nas.nas_system.task import data_mismatch
from informer_nas.nas_system.workspace import Workspace
from informer_nas.plurals import counted
from informer_nas.tools.launch_training import ensure_seeds

logger = logging.getLogger(__name__)

# The fields of a verdict event that must match for a replay to be identical.
VERDICT_FIELDS = ("iteration", "run_id", "verdict", "accepted", "decided_by", "val_mse",
                  "changes", "step_type")


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of a replay."""

    trace: Path
    workspace: Path
    identical: bool
    divergence: str | None
    iterations: int  # iterations replayed (as ``nas status`` counts them: committed ones)
    trained: int = 0  # of them, those that trained a candidate and judged it (a verdict)

    def summary(self) -> str:
        if self.identical:
            without = self.iterations - self.trained
            return (f"replay identical: {counted(self.iterations, 'iteration')} matched "
                    f"{self.trace.name} ({self.trained} trained a candidate, {without} "
                    "ended without one)")
        return f"replay diverged: {self.divergence}"


def _settings(header: dict[str, Any]) -> SessionSettings:
    """The recorded session's settings (traces before pruning was recorded: its defaults)."""
    recorded = dict(header.get("settings", {}))
    thresholds = GateThresholds(**recorded.pop("thresholds", {}))
    pruning = PruningSettings.from_record(recorded.pop("pruning", None))
    return SessionSettings(thresholds=thresholds, pruning=pruning, **recorded)


def _source_workspace(trace_path: Path) -> Path | None:
    """The workspace the trace was recorded in (``<workspace>/traces/<session>.jsonl``)."""
    root = trace_path.resolve().parent.parent
    return root if (root / "agent_state.json").is_file() else None


def _fresh_workspace(root: Path, header: dict[str, Any], source: Path | None) -> Workspace:
    """A workspace as the recorded session found it: its config, its state and, copied from
    ``source`` when it is there, the earlier runs' files the tools read (history, metrics,
    config snapshot; not the checkpoints): a resumed session's pruning thresholds and curve
    summaries come from them."""
    state = AgentState.model_validate(header["state"])
    workspace = Workspace.create(root, state.preset)
    atomic_write_text(workspace.paths.config, header["config"])
    compact_state(workspace.paths, state)
    if source is not None:
        _copy_runs(source, workspace, [run.run_id for run in state.runs])
        _copy_study(source, workspace, header.get("study_bytes"))
    return workspace


def _copy_runs(source: Path, workspace: Workspace, run_ids: list[str]) -> None:
    for run_id in run_ids:
        earlier = source / "runs" / run_id
        if earlier.is_dir():
            shutil.copytree(earlier, workspace.paths.run_dir(run_id),
                            ignore=shutil.ignore_patterns("*.pt"))
        else:
            logger.warning("replay: %s is missing; tools that read it will differ", earlier)


def _copy_study(source: Path, workspace: Workspace, size: Any) -> None:
    """The study as the recorded session found it: the first ``size`` bytes of the source's
    journal (a journal only grows). The hybrid brain's prompts name the study's proposals."""
    if not isinstance(size, int) or size <= 0:
        return
    journal = source / "study.journal"
    try:
        with journal.open("rb") as file:
            start = file.read(size)
    except OSError as exc:
        logger.warning("replay: %s is unreadable (%s); the study starts empty", journal, exc)
        return
    if len(start) < size:
        logger.warning("replay: %s is shorter than when the session started; the study "
                       "starts empty", journal)
        return
    atomic_write_bytes(workspace.paths.study, start)


def _records(records: list[dict[str, Any]], kind: str, role: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == kind and r.get("role") == role]


def _session_end(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in records if r.get("kind") == "event"
                 and r.get("name") == "session_end"), None)


def _finished(records: list[dict[str, Any]]) -> bool:
    """Whether the recorded session ran to its end (budget spent or the planner's stop)."""
    end = _session_end(records)
    return end is not None and end.get("stopped_by") in ("budget", "planner")


def _budget(header: dict[str, Any], records: list[dict[str, Any]]) -> int:
    """The iteration budget the recorded session ran with (its prompts name it)."""
    end = _session_end(records)
    if end is not None:
        return int(end["max_iterations"])
    iters = header.get("iters")
    return int(iters) if iters is not None else int(header["state"].get("max_iterations", 0))


def _target_iterations(header: dict[str, Any], records: list[dict[str, Any]]) -> int:
    """How far to replay: the budget, or what was committed before a stop or a kill."""
    if _finished(records):
        return _budget(header, records)
    committed = sum(1 for r in records if r.get("kind") == "event" and (
        r.get("name") == "verdict" or (r.get("name") == "planning_failure"
                                       and r.get("committed"))))
    return int(header["state"].get("iteration", 0)) + committed


def _iterations(events: list[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The committed iterations among ``(name, event)`` pairs, in order, as ``nas status``
    counts them: a verdict (its ``VERDICT_FIELDS``), or an iteration spent without a
    candidate to judge (a committed planning failure: ``{"iteration": n}``)."""
    iterations: list[dict[str, Any]] = []
    for name, event in events:
        if name == "verdict":
            iterations.append({"trained": True, **{f: event.get(f) for f in VERDICT_FIELDS}})
        elif name == "planning_failure" and event.get("committed"):
            iterations.append({"trained": False, "iteration": event.get("iteration")})
    return iterations


def _recorded_iterations(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _iterations([(r.get("name"), r) for r in records if r.get("kind") == "event"])


def _replayed_iterations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _iterations([(e.get("event"), e) for e in events])


def _describe(iteration: dict[str, Any]) -> str:
    return "a verdict" if iteration["trained"] else "no candidate"


def _compare(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> str | None:
    for old, new in zip(recorded, replayed, strict=False):
        if old["trained"] != new["trained"]:
            return (f"iteration {old.get('iteration')}: recorded {_describe(old)}, replayed "
                    f"{_describe(new)} (iteration {new.get('iteration')})")
        different = [f for f in VERDICT_FIELDS if old.get(f) != new.get(f)]
        if different:
            return (f"iteration {old.get('iteration')}: {different[0]} recorded "
                    f"{old.get(different[0])!r}, replayed {new.get(different[0])!r}")
    if len(recorded) != len(replayed):
        return f"{counted(len(replayed), 'iteration')} replayed, {len(recorded)} recorded"
    return None


def replay_trace(trace_path: Path, workspace: Path, retrain: bool = False,
                 executor: TrainingExecutor | None = None) -> ReplayReport:
    """Replay ``trace_path`` into the fresh directory ``workspace``.

    Args:
        trace_path: a session trace (``traces/<session>.jsonl``).
        workspace: a directory that does not hold a workspace yet.
        retrain: run the trainer again instead of using the recorded results.
        executor: the executor when retraining (default: a local subprocess).

    Raises:
        HistoryCorrupt: the trace is unreadable.
        ConfigError: ``workspace`` already holds a workspace.
    """
    records = read_trace(Path(trace_path))
    header = records[0]
    if (Path(workspace) / "agent_state.json").exists():
        raise ConfigError(f"{workspace} already holds a workspace; replay into a new directory")
    try:  # everything the header must hold, checked before anything is written
        budget, target = _budget(header, records), _target_iterations(header, records)
        settings = _settings(header)
        recorded = AgentState.model_validate(header["state"])
        if not isinstance(header["config"], str):
            raise TypeError("config is not text")
    except ValidationError as exc:
        raise HistoryCorrupt(f"{trace_path}: its header is malformed (state: "
                             f"{format_validation_error(exc)[:200]}); it cannot be "
                             "replayed") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise HistoryCorrupt(f"{trace_path}: its header is malformed ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); it cannot be "
                             "replayed") from None
    if retrain:
        _check_data(header)
    space = _fresh_workspace(Path(workspace), header, _source_workspace(Path(trace_path)))
    root = str(space.paths.root)
    models = {role: ReplayModel(role, _records(records, "model", role), root,
                                errors=_records(records, "model_error", role))
              for role in ("planner", "evaluator")}
    trainings = ReplayExecutor([r for r in records if r.get("kind") == "train"], root)
    replay_executor = (executor or LocalSubprocessExecutor()) if retrain else trainings
    replayed: list[dict[str, Any]] = []
    spec = BrainSpec(space, settings, study_space(recorded), Binding(), models=models)
    fallback = header.get("fallback")
    planner, evaluator = build_brain(str(header.get("planner", "tpe")), spec,
                                     fallback if isinstance(fallback, str) else None)
    if not models["evaluator"].records and not models["evaluator"].errors:
        evaluator = PolicyEvaluator()
    divergence: str | None = None
    try:
        run_session(space, planner, evaluator, settings, replay_executor, budget,
                    lambda event: replayed.append(event), confirm=ensure_seeds,
                    stop_after=target)
    except ReplayDivergence as exc:
        divergence = _cause(exc, records, replayed)
    iterations = _replayed_iterations(replayed)
    divergence = divergence or _compare(_recorded_iterations(records), iterations)
    if _finished(records):  # an unfinished session leaves its last iteration's responses
        divergence = divergence or _leftovers(models, trainings, retrain)
    divergence = divergence or _final_config(records, space)
    if divergence is not None:
        divergence += _version_note(header)
    return ReplayReport(Path(trace_path), space.paths.root, divergence is None, divergence,
                        len(iterations), sum(1 for i in iterations if i["trained"]))


def _version_note(header: dict[str, Any]) -> str:
    """Why an older trace may diverge: its requests were recorded against other prompts and
    tool outputs ("" for a trace of this version)."""
    version = header.get("version")
    if version == TRACE_VERSION:
        return ""
    return (f" (the trace was recorded by another version of informer-nas, trace version "
            f"{version}, this one is {TRACE_VERSION}: its prompts and tool outputs differ; "
            "replay it with the version that recorded it)")


def _cause(divergence: ReplayDivergence, records: list[dict[str, Any]],
           replayed: list[dict[str, Any]]) -> str:
    """The divergence's message, or its cause where the replay asks for a response in
    another iteration than the recorded one's: the recorded session got no further response
    in that iteration (a model call failed, in a trace from before failures were recorded),
    which a comparison of the requests alone blames on the prompt (it names the iteration)."""
    iteration = next((event.get("iteration") for event in reversed(replayed)
                      if event.get("event") == "iteration_start"), None)
    if not isinstance(divergence, StepDivergence) or iteration is None or not any(
            r.get("kind") == "event" and r.get("name") == "iteration_start" for r in records):
        return str(divergence)
    role, step = divergence.role, divergence.step
    answered = _response_iterations(records, role)
    recorded = answered[step] if step < len(answered) else None
    if recorded == iteration:
        return str(divergence)
    if recorded is not None and recorded < iteration:
        return (f"{role} step {step}: the replay asks in iteration {iteration} for the response "
                f"the recorded session got in iteration {recorded}")
    failure = next((f" ({r.get('reason')})" for r in records if r.get("kind") == "event"
                    and r.get("name") == "planning_failure" and r.get("iteration") == iteration
                    and role == "planner"), "")
    return (f"{role} step {step}: the recorded session got no further {role} response in "
            f"iteration {iteration}{failure}, and its trace holds no record of the model call "
            "that failed (traces from before failures were recorded): the replay cannot fail "
            "the same way")


def _response_iterations(records: list[dict[str, Any]], role: str) -> list[int | None]:
    """The iteration of each recorded response of ``role``, in order."""
    iterations: list[int | None] = []
    iteration = None
    for record in records:
        if record.get("kind") == "event" and record.get("name") == "iteration_start":
            value = record.get("iteration")
            iteration = value if isinstance(value, int) else None
        elif record.get("kind") == "model" and record.get("role") == role:
            iterations.append(iteration)
    return iterations


def _check_data(header: dict[str, Any]) -> None:
    """Retraining reads the data file the recorded config names: refuse one that is not the
    file the recorded session started on (the replay would only say where it diverged).

    Raises:
        ConfigError: the file is missing here or holds other data.
    """
    recorded = header.get("data_digest")
    if not isinstance(recorded, str):
        return  # recorded before sessions noted their data file, or it was unreadable then
    config = validate_config(literal_from_source(header["config"], Path("config.py")),
                             source="the trace's config.py")
    mismatch = data_mismatch(config, recorded)
    if mismatch is not None:
        problem = {"missing": "is missing here", "unreadable": "cannot be read here",
                   "changed": "holds other data than the file the recorded session trained "
                              "on"}[mismatch.kind]
        raise ConfigError(f"replay --retrain would train on {mismatch.path}{mismatch.where}, "
                          f"which {problem}; put the session's data file there, or replay "
                          "without --retrain")


def _leftovers(models: dict[str, ReplayModel], trainings: ReplayExecutor,
               retrain: bool) -> str | None:
    for role, model in models.items():
        if model.remaining:
            return (f"{role}: {counted(model.remaining, 'recorded response')} "
                    f"{_were(model.remaining)} never asked for")
    if not retrain and trainings.remaining:
        return (f"{counted(trainings.remaining, 'recorded training')} "
                f"{_were(trainings.remaining)} never launched")
    return None


def _were(count: int) -> str:
    return "was" if count == 1 else "were"


def _final_config(records: list[dict[str, Any]], workspace: Workspace) -> str | None:
    end = _session_end(records)
    if end is None or end.get("config") is None:
        return None
    if workspace.paths.config.read_text(encoding="utf-8") != end["config"]:
        return "the final config.py differs from the recorded session's"
    return None
