"""The Python API: ``run_nas_optimization`` with the options of ``nas run``.

It sits at the CLI's floor: it wires a brain (agents) to the session loop (nas_system).
The Agents SDK is imported inside the function, so importing this module stays fast.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from informer_nas.errors import ConfigError
from informer_nas.nas_system.gate import GateThresholds
from informer_nas.nas_system.pruning import PruneKind, PruningSettings
from informer_nas.nas_system.session import SessionObserver, SessionResult, check_budget
from informer_nas.nas_system.settings import KeepCheckpoints, SessionSettings

if TYPE_CHECKING:
    from informer_nas.agents.trace import TraceRecorder
    from informer_nas.informer.config import InformerConfig
    from informer_nas.nas_system.executor import TrainingExecutor
    from informer_nas.nas_system.state import AgentState, SessionInfo
    from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE = Path("nas-workspace")


def open_or_create(workspace: str | Path, preset: str) -> Workspace:
    """Open ``workspace``, creating it from ``preset`` when it is not one yet."""
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.workspace import Workspace, unfinished_creation

    root = Path(workspace)
    paths = WorkspacePaths(root.resolve())
    if paths.state.is_file() or (paths.config.is_file() and not unfinished_creation(paths)):
        return Workspace.open(root)
    logger.info("creating workspace %s from preset %s", root, preset)
    created = Workspace.create(root, preset)
    for note in created.notes:
        logger.info("%s", note)
    return created


def default_planner() -> str:
    """``hybrid`` when an LLM endpoint is configured, else ``tpe``."""
    from informer_nas.agents.brains.llm_settings import llm_configured

    return "hybrid" if llm_configured() else "tpe"


def existing_state(workspace: str | Path) -> AgentState | None:
    """The state of an existing workspace (None: no workspace, or an unreadable state, which
    the session itself reports): its planner and preset, before a session starts."""
    from informer_nas.errors import NasError
    from informer_nas.nas_system.paths import WorkspacePaths
    from informer_nas.nas_system.state import load_state

    paths = WorkspacePaths(Path(workspace).resolve())
    if not paths.state.is_file():
        return None
    try:
        return load_state(paths)
    except NasError:
        return None


def new_session_id(planner: str, taken: Path | None = None) -> str:
    """A sortable session id: UTC time, planner and process id, plus a counter when a trace
    of that name already exists in ``taken`` (two sessions of one process in one second)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    session_id, number = f"{stamp}-{planner}-{os.getpid()}", 1
    while taken is not None and (taken / f"{session_id}.jsonl").exists():
        number += 1
        session_id = f"{stamp}.{number}-{planner}-{os.getpid()}"  # sorts after the first
    return session_id


def run_nas_optimization(
    workspace: str | Path = DEFAULT_WORKSPACE,
    iters: int | None = None,
    planner: str | None = None,
    preset: str = "quick",
    seed: int | None = None,
    confirm_seeds: int | None = None,
    timeout: float | None = None,
    fallback: str | None = None,
    prune: bool | None = None,
    quiet: bool = False,
    observer: SessionObserver | None = None,
    executor: TrainingExecutor | None = None,
    max_turns: int = 12,
    thresholds: GateThresholds | None = None,
    prune_rule: str | None = None,
    prune_percentile: float | None = None,
    keep_checkpoints: str | None = None,
) -> SessionResult:
    """Run (or resume) an architecture search in ``workspace``.

    Args:
        workspace: the workspace directory; created from ``preset`` when missing.
        iters: the workspace's total iteration budget (None: keep the stored one).
        planner: ``tpe`` / ``random`` / ``llm`` / ``hybrid``. None: the workspace's
            planner (stored in its state), and for a new workspace hybrid when an LLM
            endpoint is configured, else tpe.
        preset: ``tiny`` / ``quick`` / ``paper``, for a new workspace.
        seed: base seed of the trainings and of the study's sampler. None (the default,
            and what ``nas run`` / ``nas resume`` pass without ``--seed``) inherits the
            seed of the workspace's previous session, read from the header of its trace
            (0 for a new workspace): a resumed search then proposes the same trials as an
            uninterrupted one. Pass a seed only to start a differently seeded search.
        confirm_seeds: extra seeds for accepting or borderline candidates (None: as the
            previous session, else 0).
        timeout: seconds one training may take (None: no limit).
        fallback: brain to continue on when the LLM is unreachable (e.g. ``tpe``). None
            with ``planner`` None (a resume): the previous session's fallback.
        prune: stop hopeless trainings early (None: as the previous session, else True).
        quiet: do not log session events (the CLI shows its own display).
        observer: receives the session events (see ``run_session``).
        executor: where trainings run (default: a local subprocess).
        max_turns: the planner's turn limit per iteration.
        thresholds: the gate's thresholds (default: ``GateThresholds()``).
        prune_rule: ``median`` or ``percentile`` (uses ``prune_percentile``). None with
            ``prune_percentile`` None: the previous session's rule, else median.
        prune_percentile: for the percentile rule, in [0, 100] (25 prunes more than 50);
            given alone it selects the percentile rule.
        keep_checkpoints: ``all`` runs keep their ``best_model.pt``, or only the
            ``incumbent`` (None: as the previous session, else all).

    Raises:
        NasError: a bad option, workspace or config (the message says what to do).
        WorkspaceLocked: another live process holds the workspace (nothing was written).
    """
    from informer_nas.agents.brains.llm_settings import llm_environment
    from informer_nas.agents.trace import RecordingExecutor, TraceRecorder, secret_values
    from informer_nas.agents.wiring import BrainSpec, build_brain, check_brain_names
    from informer_nas.nas_system.local_executor import LocalSubprocessExecutor
    from informer_nas.nas_system.lock import workspace_lock
    from informer_nas.nas_system.session import run_session
    from informer_nas.nas_system.state import SessionInfo, load_state, now_iso
    from informer_nas.tools.launch_training import ensure_seeds

    check_budget(iters)  # a refused argument creates no workspace
    check_brain_names(planner, fallback)
    space = open_or_create(workspace, preset)
    # Held from before the first write (the trace) to the end: a refused second
    # session leaves the holder's workspace untouched; run_session reuses it.
    with workspace_lock(space.paths, share=True):
        state = load_state(space.paths)
        header = previous_header(space, state)
        previous = header.get("settings", {})
        settings = _settings(
            previous if isinstance(previous, dict) else {}, timeout=timeout,
            thresholds=thresholds, prune=prune, prune_rule=prune_rule,
            prune_percentile=prune_percentile, confirm_seeds=confirm_seeds, seed=seed,
            max_turns=max_turns, keep_checkpoints=keep_checkpoints,
        )
        check_budget(iters, state.iteration)  # before the trace: a refusal writes nothing
        budget = iters if iters is not None else state.max_iterations
        if budget <= state.iteration and state.current is None:  # nothing to run or judge
            return SessionResult("budget", 0, state.iteration, budget, state.incumbent_run_id,
                                 "the budget is spent")
        # refusals (a bad hand edit, the task, the data file) come before anything is written
        executor = executor or LocalSubprocessExecutor()
        config = check_config_and_data(space, state, executor.reads_data)
        if planner is None and fallback is None and isinstance(header.get("fallback"), str):
            fallback = header["fallback"]
        name = planner or state.planner or default_planner()
        session_id = new_session_id(name, taken=space.paths.traces)
        trace_file = f"traces/{session_id}.jsonl"
        recorder = TraceRecorder(space.paths.root / trace_file, space.paths.root,
                                 secrets=secret_values(llm_environment()))
        write_header(recorder, space, name, settings, iters, state.model_dump(mode="json"),
                     fallback, _data_digest(config))
        info = SessionInfo(session_id=session_id, started_at=now_iso(), planner=name,
                           trace_file=trace_file)
        _record_session_start(space, state, info, name, iters)
        if observer is not None:
            observer({"event": "session_start", "planner": name, "fallback": fallback,
                      "session_id": session_id})
        try:
            from informer_nas.agents.provider import Binding, usage_dict
            from informer_nas.nas_system.search_space import study_space

            binding = Binding(recorder=recorder)
            brain_planner, evaluator = build_brain(
                name, BrainSpec(space, settings, study_space(state), binding, tracing_opted_in()),
                fallback,
            )
            result = run_session(
                space, brain_planner, evaluator, settings,
                RecordingExecutor(executor, recorder), iters,
                _observers(recorder, observer, quiet), info, confirm=ensure_seeds,
            )
            recorder.write("usage", session=usage_dict(binding.session_usage))
            return result
        finally:
            recorder.close()


def check_config_and_data(workspace: Workspace, state: AgentState,
                          reads_data: bool = True) -> InformerConfig:
    """What ``run_session`` checks first (config.py readable and valid, the task unchanged,
    the incumbent's data file), checked before the trace and the session's entry are
    written: a refused start leaves the workspace as it was. Returns the config.

    Raises:
        ConfigError: what is wrong and what to do.
    """
    from informer_nas.informer.config import load_config
    from informer_nas.nas_system.task import check_data, check_task

    config = load_config(workspace.paths.config)
    check_task(workspace.paths, state, config)
    if reads_data:  # (an executor that replays recorded results reads no data)
        check_data(state, config)
    return config


def _record_session_start(workspace: Workspace, state: AgentState, info: SessionInfo,
                          planner: str, iters: int | None) -> None:
    """Save the session, its planner and its budget right after the trace's header: a kill
    while the brain is being built must not leave a trace the state does not name (the next
    session reads its settings from the last named trace) or a budget of 0."""
    from informer_nas.nas_system.state import save_state

    if iters is not None:
        state.max_iterations = iters
    state.planner = planner
    state.sessions.append(info)
    save_state(workspace.paths, state)


def previous_header(workspace: Workspace, state: AgentState) -> dict[str, Any]:
    """The header of the workspace's last session trace (of ``state.sessions``) whose header
    is readable ({} when there is none): the settings a resume inherits. Damage further down
    a trace does not matter; an unreadable header falls back to the session before, with a
    warning."""
    from informer_nas.agents.trace import read_trace_header
    from informer_nas.errors import NasError

    for session in reversed(state.sessions):
        try:
            return read_trace_header(workspace.paths.root / session.trace_file)
        except NasError as exc:
            logger.warning("settings not read from %s (%s); trying the session before",
                           session.trace_file, exc)
    return {}


def _settings(previous: dict[str, Any], *, timeout: float | None,
              thresholds: GateThresholds | None, prune: bool | None, prune_rule: str | None,
              prune_percentile: float | None, confirm_seeds: int | None, seed: int | None,
              max_turns: int, keep_checkpoints: str | None = None) -> SessionSettings:
    """The session's settings: the options given, else the previous session's (``previous``)."""
    recorded_timeout = previous.get("timeout_s")
    return SessionSettings(
        timeout_s=timeout if timeout is not None else (
            float(recorded_timeout) if isinstance(recorded_timeout, int | float) else None),
        thresholds=thresholds or GateThresholds(),
        prune=prune if prune is not None else bool(previous.get("prune", True)),
        pruning=pruning_settings(prune_rule, prune_percentile, previous.get("pruning")),
        confirm_seeds=confirm_seeds if confirm_seeds is not None else int(
            previous.get("confirm_seeds", 0)),
        seed=seed if seed is not None else int(previous.get("seed", 0)), max_turns=max_turns,
        keep_checkpoints=cast(KeepCheckpoints, keep_checkpoints  # checked by SessionSettings
                              or str(previous.get("keep_checkpoints", "all"))),
    )


def pruning_settings(rule: str | None, percentile: float | None,
                     recorded: Any = None) -> PruningSettings:
    """The pruning rule from the options, else the recorded one, else the median rule.

    Raises:
        ConfigError: an unknown rule, a percentile outside [0, 100], or a percentile with
            the median rule.
    """
    base = PruningSettings.from_record(recorded)
    if rule is None and percentile is None:
        return base
    kinds: dict[str, PruneKind] = {"median": "median", "percentile": "percentile"}
    kind = kinds.get(rule or "percentile")
    if kind is None:
        raise ConfigError(f"--prune-rule must be median or percentile, got {rule!r}; "
                          "e.g. --prune-rule percentile --prune-percentile 25")
    if kind == "median" and percentile is not None and percentile != 50.0:
        raise ConfigError(f"--prune-percentile {percentile:g} needs --prune-rule percentile "
                          "(median is the 50th percentile)")
    return replace(base, kind=kind,
                   percentile=base.percentile if percentile is None else percentile)


def tracing_opted_in() -> bool:
    """Export of agent traces to OpenAI only with ``NAS_OPENAI_TRACING=1``."""
    return os.environ.get("NAS_OPENAI_TRACING", "") == "1"


def write_header(recorder: TraceRecorder, workspace: Workspace, planner: str,
                 settings: SessionSettings, iters: int | None, state: dict[str, Any],
                 fallback: str | None = None, data_digest: str | None = None) -> None:
    """The trace's first line: what a replay (and the next session) starts from."""
    from informer_nas.agents.trace import TRACE_VERSION

    recorder.write(
        "header", version=TRACE_VERSION, planner=planner, fallback=fallback, iters=iters,
        workspace=recorder.root,
        settings={"timeout_s": settings.timeout_s, "confirm_seeds": settings.confirm_seeds,
                  "seed": settings.seed, "prune": settings.prune,
                  "pruning": asdict(settings.pruning), "max_turns": settings.max_turns,
                  "thresholds": vars(settings.thresholds).copy(),
                  "keep_checkpoints": settings.keep_checkpoints},
        config=workspace.paths.config.read_text(encoding="utf-8"), state=state,
        study_bytes=_size(workspace.paths.study),
        data_digest=data_digest,
    )


def _data_digest(config: InformerConfig) -> str | None:
    """The digest of the data file a session starts on, for ``nas replay --retrain`` (None
    when it cannot be read: its trainings say why)."""
    from informer_nas.errors import NasError
    from informer_nas.informer.data_files import data_file, file_digest

    try:
        return file_digest(data_file(config.data))
    except NasError:
        return None


def _size(path: Path) -> int:
    """The size of a file in bytes (0 when there is none). The study journal only grows, so
    its first ``study_bytes`` bytes are the study as the session found it (a replay of a
    resumed hybrid session asks that study for the same proposals)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _observers(recorder: TraceRecorder, observer: SessionObserver | None,
               quiet: bool) -> SessionObserver:
    def observe(event: dict[str, Any]) -> None:
        recorder.event(event)
        if observer is not None:
            observer(event)
        if not quiet and event.get("event") in ("plan", "verdict", "planning_failure"):
            logger.info("%s", {k: v for k, v in event.items() if k != "config"})

    return observe
