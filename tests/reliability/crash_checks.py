"""The invariants a crash must not break; each check returns its violations (empty: fine).

Used after every injected ``kill -9`` and after the final ``nas resume`` (see
``crash_harness.py``). The state is always read through ``load_state`` (snapshot plus
journal), the study through Optuna's ``JournalStorage``.
"""

from __future__ import annotations

import json
from typing import Any

from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.state import AgentState, load_state

RUN_FIELDS = ("run_id", "iteration", "status", "status_reason", "val_mse", "val_mae",
              "test_mse", "test_mae", "seed")


def run_view(run: RunRecord) -> tuple[Any, ...]:
    """What must never change about a finished run."""
    return tuple(getattr(run, name) for name in RUN_FIELDS)


def finished_runs(state: AgentState) -> dict[str, tuple[Any, ...]]:
    """run id -> view of every run that finished (interrupted ones included)."""
    return {r.run_id: run_view(r) for r in state.runs if r.status is not RunStatus.RUNNING}


def committed_runs(state: AgentState) -> dict[str, tuple[Any, ...]]:
    """run id -> view plus verdict of every run with a verdict."""
    return {r.run_id: (*run_view(r), r.verdict, r.accepted) for r in state.runs
            if r.verdict is not None}


def check_state(paths: WorkspacePaths) -> tuple[AgentState | None, list[str]]:
    """Load and validate the state; contiguous ids; run dirs; one commit per iteration."""
    try:
        state = load_state(paths)
    except Exception as exc:  # noqa: BLE001 (any failure to load is the violation)
        return None, [f"state does not load: {exc}"]
    problems: list[str] = []
    ids = [run.run_id for run in state.runs]
    if ids != [f"run_{n:04d}" for n in range(len(ids))]:
        problems.append(f"run ids not contiguous: {ids}")
    if state.next_run_number < len(ids):
        problems.append(f"next_run_number {state.next_run_number} < {len(ids)} runs")
    dirs = {p.name for p in paths.runs.iterdir()} if paths.runs.is_dir() else set()
    if dirs - set(ids):
        problems.append(f"run directories without a record: {sorted(dirs - set(ids))}")
    iterations = [run.iteration for run in state.runs if run.verdict is not None]
    if len(iterations) != len(set(iterations)):
        problems.append(f"an iteration was committed twice: {sorted(iterations)}")
    if any(i > state.iteration for i in iterations):
        problems.append(f"a verdict beyond iteration {state.iteration}: {sorted(iterations)}")
    running = [run.run_id for run in state.runs if run.status is RunStatus.RUNNING]
    if len(running) > 1:
        problems.append(f"more than one run marked running: {running}")
    return state, problems


def check_preserved(before: dict[str, tuple[Any, ...]], after: AgentState,
                    what: str) -> list[str]:
    """Every run in ``before`` is in ``after`` with the same view."""
    now = {**finished_runs(after), **committed_runs(after)}
    problems = []
    for run_id, view in before.items():
        current = now.get(run_id)
        if current is None:
            problems.append(f"{what}: {run_id} lost")
        elif current[: len(view)] != view:
            problems.append(f"{what}: {run_id} changed from {view} to {current}")
    return problems


def config_used(paths: WorkspacePaths, run_id: str | None) -> str | None:
    if run_id is None:
        return None
    try:
        return (paths.run_dir(run_id) / "config_used.py").read_text(encoding="utf-8")
    except OSError:
        return None


def check_config(paths: WorkspacePaths, state: AgentState, initial: str,
                 allow_pending: bool) -> list[str]:
    """``config.py`` is the incumbent's ``config_used.py`` (the initial one before any)."""
    text = paths.config.read_text(encoding="utf-8")
    expected = config_used(paths, state.incumbent_run_id) if state.incumbent_run_id else initial
    if text == expected:
        return []
    pending = state.current.launched_run_id if state.current else None
    if allow_pending and pending is not None and text == config_used(paths, pending):
        return []  # a torn accept: the next start restores the incumbent
    return [f"config.py differs from the incumbent {state.incumbent_run_id}'s config_used.py"]


def check_traces(paths: WorkspacePaths) -> list[str]:
    """Every complete trace line parses; only a last line without newline may be torn."""
    problems = []
    for path in sorted(paths.traces.glob("*.jsonl")):
        data = path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        for number, line in enumerate(complete, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(f"{path.name}:{number}: a complete line does not parse")
                continue
            if number == 1 and record.get("kind") != "header":
                problems.append(f"{path.name}: first line is not the header")
        if tail:
            try:
                json.loads(tail)
                problems.append(f"{path.name}: last line lacks its newline")
            except ValueError:
                pass  # torn by the kill: allowed
    return problems


def check_study(paths: WorkspacePaths, state: AgentState) -> list[str]:
    """The TPE study (``study.journal``) agrees with the committed runs."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(paths.study)))
    study = optuna.load_study(study_name="informer-nas", storage=storage)
    trials = study.get_trials(deepcopy=False)
    problems = [f"trial {t.number} still RUNNING" for t in trials
                if t.state == TrialState.RUNNING]
    by_run: dict[str, list[Any]] = {}
    for trial in trials:
        if "run_id" in trial.user_attrs:
            by_run.setdefault(trial.user_attrs["run_id"], []).append(trial)
    for run in state.runs:
        if run.verdict is None:
            continue
        told = [t for t in by_run.pop(run.run_id, []) if not t.user_attrs.get("overridden")]
        if len(told) != 1:
            problems.append(f"{run.run_id}: {len(told)} trials in the study, expected 1")
            continue
        trial = told[0]
        if trial.user_attrs.get("iteration") != run.iteration:
            problems.append(f"{run.run_id}: trial {trial.number} has iteration "
                            f"{trial.user_attrs.get('iteration')}, run {run.iteration}")
        if run.status is RunStatus.OK:
            if trial.state != TrialState.COMPLETE or trial.value != run.val_mse:
                problems.append(f"{run.run_id}: ok with val_mse {run.val_mse} but trial "
                                f"{trial.number} is {trial.state.name} {trial.value}")
        elif trial.state not in (TrialState.FAIL, TrialState.PRUNED):
            problems.append(f"{run.run_id}: {run.status.value} but trial {trial.number} is "
                            f"{trial.state.name}")
    problems += [f"trial for unknown or uncommitted run {run_id}" for run_id in by_run]
    return problems


def orphan_trials(paths: WorkspacePaths) -> int:
    """Trials without an ``iteration`` attribute (a kill inside ``study.ask``)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(paths.study)))
    study = optuna.load_study(study_name="informer-nas", storage=storage)
    return sum("iteration" not in t.user_attrs for t in study.get_trials(deepcopy=False))


def check_doctor(paths: WorkspacePaths) -> list[str]:
    from informer_nas.nas_system.doctor import diagnose

    report = diagnose(paths.root)
    return [] if report.is_healthy else [f"nas doctor: {line}" for line in report.lines()]


def committed_configs(paths: WorkspacePaths, state: AgentState) -> dict[int, tuple[Any, ...]]:
    """iteration -> (config_used.py text, status, val_mse) of its committed run."""
    return {run.iteration: (config_used(paths, run.run_id), run.status.value, run.val_mse)
            for run in state.runs if run.verdict is not None}


def kill_phase(state: AgentState | None) -> str:
    """Where a kill landed: idle, planning, training or judging (a finished run's verdict)."""
    if state is None or state.current is None:
        return "between iterations"
    launched = state.current.launched_run_id
    if launched is None:
        return "planning"
    run = next((r for r in state.runs if r.run_id == launched), None)
    if run is None or run.status is RunStatus.RUNNING:
        return "training"
    return "judging"
