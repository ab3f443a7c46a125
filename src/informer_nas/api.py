"""The Python API: ``run_nas_optimization`` with the options of ``nas run``.

It sits at the CLI's floor: it wires a brain (agents) to the session loop (nas_system).
The Agents SDK is imported inside the function, so importing this module stays fast.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from informer_nas.nas_system.gate import GateThresholds
from informer_nas.nas_system.session import SessionObserver, SessionResult
from informer_nas.nas_system.settings import SessionSettings

if TYPE_CHECKING:
    from informer_nas.agents.trace import TraceRecorder
    from informer_nas.nas_system.executor import TrainingExecutor
    from informer_nas.nas_system.workspace import Workspace

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE = Path("nas-workspace")


def open_or_create(workspace: str | Path, preset: str) -> Workspace:
    """Open ``workspace``, creating it from ``preset`` when it is not one yet."""
    from informer_nas.nas_system.workspace import Workspace

    root = Path(workspace)
    if (root / "agent_state.json").is_file() or (root / "config.py").is_file():
        return Workspace.open(root)
    logger.info("creating workspace %s from preset %s", root, preset)
    return Workspace.create(root, preset)


def default_planner() -> str:
    """``hybrid`` when an LLM endpoint is configured, else ``tpe``."""
    from informer_nas.agents.brains.llm_settings import llm_configured

    return "hybrid" if llm_configured() else "tpe"


def new_session_id(planner: str) -> str:
    """A sortable, unique session id: UTC time, planner and process id."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{planner}-{os.getpid()}"


def run_nas_optimization(
    workspace: str | Path = DEFAULT_WORKSPACE,
    iters: int | None = None,
    planner: str | None = None,
    preset: str = "quick",
    seed: int | None = None,
    confirm_seeds: int | None = None,
    timeout: float | None = None,
    fallback: str | None = None,
    prune: bool = True,
    quiet: bool = False,
    observer: SessionObserver | None = None,
    executor: TrainingExecutor | None = None,
    max_turns: int = 12,
    thresholds: GateThresholds | None = None,
) -> SessionResult:
    """Run (or resume) an architecture search in ``workspace``.

    Args:
        workspace: the workspace directory; created from ``preset`` when missing.
        iters: the workspace's total iteration budget (None: keep the stored one).
        planner: ``tpe`` / ``random`` / ``llm`` / ``hybrid`` (None: hybrid when an LLM
            endpoint is configured, else tpe).
        preset: ``tiny`` / ``quick`` / ``paper``, for a new workspace.
        seed: base seed of the trainings and of the study's sampler. None (the default,
            and what ``nas run`` / ``nas resume`` pass without ``--seed``) inherits the
            seed of the workspace's previous session, read from the header of its trace
            (0 for a new workspace): a resumed search then proposes the same trials as an
            uninterrupted one. Pass a seed only to start a differently seeded search.
        confirm_seeds: extra seeds for accepting or borderline candidates (None: as the
            previous session, else 0).
        timeout: seconds one training may take (None: no limit).
        fallback: brain to continue on when the LLM is unreachable (e.g. ``tpe``).
        prune: stop hopeless trainings early.
        quiet: do not log session events (the CLI shows its own display).
        observer: receives the session events (see ``run_session``).
        executor: where trainings run (default: a local subprocess).
        max_turns: the planner's turn limit per iteration.
        thresholds: the gate's thresholds (default: ``GateThresholds()``).

    Raises:
        NasError: a bad option, workspace or config (the message says what to do).
    """
    from informer_nas.agents.brains.llm_settings import llm_environment
    from informer_nas.agents.trace import RecordingExecutor, TraceRecorder, secret_values
    from informer_nas.agents.wiring import BrainSpec, build_brain
    from informer_nas.nas_system.executor import LocalSubprocessExecutor
    from informer_nas.nas_system.session import run_session
    from informer_nas.nas_system.state import SessionInfo, load_state, now_iso
    from informer_nas.tools.launch_training import ensure_seeds

    space = open_or_create(workspace, preset)
    previous = previous_settings(space)
    settings = SessionSettings(
        timeout_s=timeout, thresholds=thresholds or GateThresholds(), prune=prune,
        confirm_seeds=confirm_seeds if confirm_seeds is not None else int(
            previous.get("confirm_seeds", 0)),
        seed=seed if seed is not None else int(previous.get("seed", 0)), max_turns=max_turns,
    )
    name = planner or default_planner()
    session_id = new_session_id(name)
    trace_file = f"traces/{session_id}.jsonl"
    recorder = TraceRecorder(space.paths.root / trace_file, space.paths.root,
                             secrets=secret_values(llm_environment()))
    state = load_state(space.paths)
    write_header(recorder, space, name, settings, iters, state.model_dump(mode="json"))
    try:
        from informer_nas.agents.provider import Binding, usage_dict

        binding = Binding(recorder=recorder)
        brain_planner, evaluator = build_brain(
            name, BrainSpec(space, settings, state.preset, binding, tracing_opted_in()),
            fallback,
        )
        result = run_session(
            space, brain_planner, evaluator, settings,
            RecordingExecutor(executor or LocalSubprocessExecutor(), recorder), iters,
            _observers(recorder, observer, quiet),
            SessionInfo(session_id=session_id, started_at=now_iso(), planner=name,
                        trace_file=trace_file),
            confirm=ensure_seeds,
        )
        recorder.write("usage", session=usage_dict(binding.session_usage))
        return result
    finally:
        recorder.close()


def previous_settings(workspace: Workspace) -> dict[str, Any]:
    """The settings recorded in the header of the workspace's last session trace ({})."""
    from informer_nas.agents.trace import read_trace
    from informer_nas.errors import NasError
    from informer_nas.nas_system.state import load_state

    sessions = load_state(workspace.paths).sessions
    if not sessions:
        return {}
    try:
        header = read_trace(workspace.paths.root / sessions[-1].trace_file)[0]
    except NasError:
        return {}
    settings = header.get("settings", {})
    return settings if isinstance(settings, dict) else {}


def tracing_opted_in() -> bool:
    """Export of agent traces to OpenAI only with ``NAS_OPENAI_TRACING=1``."""
    return os.environ.get("NAS_OPENAI_TRACING", "") == "1"


def write_header(recorder: TraceRecorder, workspace: Workspace, planner: str,
                 settings: SessionSettings, iters: int | None, state: dict[str, Any]) -> None:
    """The trace's first line: what a replay needs to start from the same point."""
    recorder.write(
        "header", version=1, planner=planner, iters=iters, workspace=recorder.root,
        settings={"timeout_s": settings.timeout_s, "confirm_seeds": settings.confirm_seeds,
                  "seed": settings.seed, "prune": settings.prune,
                  "max_turns": settings.max_turns,
                  "thresholds": vars(settings.thresholds).copy()},
        config=workspace.paths.config.read_text(encoding="utf-8"), state=state,
    )


def _observers(recorder: TraceRecorder, observer: SessionObserver | None,
               quiet: bool) -> SessionObserver:
    def observe(event: dict[str, Any]) -> None:
        recorder.event(event)
        if observer is not None:
            observer(event)
        if not quiet and event.get("event") in ("plan", "verdict", "planning_failure"):
            logger.info("%s", {k: v for k, v in event.items() if k != "config"})

    return observe
