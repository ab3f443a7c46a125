"""``nas doctor``: explain what is wrong with a workspace, and repair what can be repaired.

``diagnose(root)`` only reads. ``diagnose(root, repair=True)`` takes the workspace lock
(never touching a workspace a live session holds) and repairs: an unreadable or invalid
``agent_state.json`` is rebuilt from the snapshot, the journal and the run directories
(``salvage.py``: no completed run is lost); runs left ``running`` become ``interrupted``;
a run whose directory is gone becomes ``crashed`` ("run directory missing"), unless it is
the incumbent, and gets its status back once the directory is back with the metrics it
recorded (a remounted disk, a restored backup); ``config.py`` (not a pure literal, failing
the schema, or another run's config after a torn accept) is restored from the incumbent's
``config_used.py`` (a valid hand edit is kept, as the session keeps it); a stale
``candidate.py`` is removed; a trace line torn by a crash is cut. Each file is replaced
atomically after a copy ``<name>.corrupt-<UTC time>`` (it was unreadable) or
``<name>.bak-<UTC time>`` is kept.
Orphaned run directories and a stale lock are only reported: new run ids skip existing
directories, and a dead holder's lock is taken over.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from informer_nas.errors import ConfigError, HistoryCorrupt, NasError, WorkspaceLocked
from informer_nas.nas_system.atomic import atomic_write_bytes
from informer_nas.nas_system.config_file import check_config_file
from informer_nas.nas_system.executor import read_metrics
from informer_nas.nas_system.lock import file_stamp, lock_status
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.recovery import finished_metrics
from informer_nas.nas_system.salvage import (
    finite_number,
    rebuild_state,
    record_from_run_dir,
    run_dir_ids,
    snapshot_version,
    split_json_lines,
)
from informer_nas.nas_system.state import (
    SCHEMA_VERSION,
    AgentState,
    compact_state,
    journal_path,
    load_state,
    now_iso,
    workspace_lock,
)
from informer_nas.nas_system.task import data_problem, task_changes
from informer_nas.plurals import counted

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]
MISSING_RUN_DIR = "run directory missing"
_MAX_PROBLEM = 600


@dataclass(frozen=True)
class Finding:
    """One thing the doctor noticed.

    Attributes:
        severity: ``error`` (a session cannot run, or data is at risk), ``warning``
            (inconsistent; a session may cope) or ``info`` (harmless).
        subject: the file or run concerned, relative to the workspace.
        problem: what is wrong; action: what was done (``repaired``) or can be done.
    """

    severity: Severity
    subject: str
    problem: str
    action: str
    repaired: bool = False

    @property
    def is_open(self) -> bool:
        """A problem that is still there (not repaired, not merely informative)."""
        return self.severity != "info" and not self.repaired

    def line(self) -> str:
        label = "repaired" if self.repaired else self.severity
        return f"[{label}] {self.subject}: {self.problem} -> {self.action}"


@dataclass
class DoctorReport:
    """What ``diagnose`` found (and repaired) in one workspace."""

    root: Path
    repair: bool
    findings: list[Finding] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)

    @property
    def is_healthy(self) -> bool:
        """No error or warning is left unrepaired."""
        return not any(finding.is_open for finding in self.findings)

    def lines(self) -> list[str]:
        """The findings, the backups written and a summary, one line each (for the CLI)."""
        lines = [finding.line() for finding in self.findings]
        lines += [f"backup kept: {path}" for path in self.backups]
        open_count = sum(finding.is_open for finding in self.findings)
        repaired = sum(finding.repaired for finding in self.findings)
        if open_count == 0:
            lines.append(f"{self.root}: healthy ({repaired} repaired)")
        else:
            where = shlex.quote(str(self.root))
            repairable = any(f.is_open and f.action.startswith(REPAIR_WILL)
                             for f in self.findings)
            advice = (f"repair with `nas doctor --workspace {where} --repair`" if repairable
                      else "the advice above says what to do by hand")
            lines.append(f"{self.root}: {counted(open_count, 'problem')} left; {advice}")
        return lines


REPAIR_WILL = "`nas doctor --repair` will "  # how a repairable finding's action starts


def diagnose(root: Path, repair: bool = False) -> DoctorReport:
    """Check a workspace; with ``repair``, fix what can be fixed without losing a run.

    Args:
        root: the workspace directory.
        repair: repair (atomically, with backups) instead of only reporting.

    Raises:
        NasError: ``root`` is not a workspace at all.
    """
    paths = WorkspacePaths(Path(root).resolve())
    if not any(path.exists() for path in (paths.config, paths.state, paths.runs)):
        raise NasError(f"{paths.root} is not an informer-nas workspace (no config.py, "
                       f"agent_state.json or runs/); pass --workspace DIR, or `nas init` one")
    report = DoctorReport(paths.root, repair)
    holder, is_held = lock_status(paths)
    if holder is not None and not is_held:
        report.findings.append(Finding(
            "info", ".nas.lock", f"left by pid {holder.pid} on {holder.hostname} (since "
            f"{holder.started_at}), which stopped without releasing it",
            "harmless: the next `nas run` takes it over"))
    if not repair:
        _Doctor(paths, report, can_repair=False, is_live=is_held).run()
        return report
    try:
        with workspace_lock(paths):
            _Doctor(paths, report, can_repair=True, is_live=False).run()
    except WorkspaceLocked as exc:
        report.findings.append(Finding(
            "error", ".nas.lock", str(exc), "nothing was repaired; run `nas doctor --repair` "
            "again once that session has finished"))
        _Doctor(paths, report, can_repair=False, is_live=True).run()
    return report


@dataclass
class _Doctor:
    paths: WorkspacePaths
    report: DoctorReport
    can_repair: bool
    is_live: bool  # a session holds the lock: its iteration in progress is not ours to judge
    stamp: str = field(default_factory=file_stamp)
    state_changed: bool = False
    state_backed_up: bool = False

    def add(self, severity: Severity, subject: str, problem: str, action: str,
            repaired: bool = False) -> None:
        problem = problem if len(problem) <= _MAX_PROBLEM else problem[:_MAX_PROBLEM] + "..."
        self.report.findings.append(Finding(severity, subject, problem, action, repaired))
        if repaired:
            logger.info("doctor repaired %s: %s (%s)", subject, problem, action)

    def fix(self, severity: Severity, subject: str, problem: str, action: str,
            apply: Callable[[], object] | None, changes_state: bool = False) -> None:
        """Report a problem; when repairing, ``apply`` it first (``action``: imperative)."""
        if apply is None:
            self.add(severity, subject, problem, f"not repairable: {action}")
        elif not self.can_repair:
            self.add(severity, subject, problem, f"{REPAIR_WILL}{action}")
        else:
            apply()
            self.state_changed |= changes_state
            self.add(severity, subject, problem, action, repaired=True)

    def run(self) -> None:
        if self.is_live:
            self.add("info", ".nas.lock", "a session is running in this workspace",
                     "its iteration in progress, candidate.py and live trace are not checked")
        state = self.check_state()
        if state is not None:
            self.check_incumbent_record(state)
            self.check_runs(state)
            if self.state_changed:
                self.commit_state(state)
        self.check_config(state)
        if state is not None:
            self.check_candidate(state)
            self.check_data(state)
        self.check_study_lock()
        self.check_traces(state)

    # -- agent_state.json ----------------------------------------------------------------

    def check_state(self) -> AgentState | None:
        version = snapshot_version(self.paths.state)
        if version is not None and version > SCHEMA_VERSION:
            self.can_repair = False
            self.fix("error", "agent_state.json", f"schema_version {version} was written by a "
                     f"newer informer-nas (this one reads {SCHEMA_VERSION})",
                     "upgrade informer-nas; nothing in the workspace was changed", None)
            return None
        try:
            state = load_state(self.paths)
        except HistoryCorrupt as exc:
            return self.rebuild(str(exc).split("; it was left untouched")[0]
                                .split("; run `nas doctor")[0])
        recorded = {run.run_id for run in state.runs}
        lost = [run_id for run_id in run_dir_ids(self.paths) if run_id not in recorded
                and (read_metrics(self.paths.run_dir(run_id))[0] or {}).get("status") == "ok"]
        if lost and not self.is_live:
            return self.rebuild(f"{counted(len(lost), 'finished run')} "
                                f"{'has' if len(lost) == 1 else 'have'} no record "
                                f"({', '.join(lost[:3])}"
                                f"{', ...' if len(lost) > 3 else ''}): agent_state.journal was "
                                "lost or cut")
        journal = journal_path(self.paths)
        if journal.is_file() and not journal.read_bytes().endswith(b"\n"):
            self.add("info", journal.name, "its last line was torn by a crash during a save",
                     "harmless: it is ignored when reading and cut at the next save")
        return state

    def rebuild(self, problem: str) -> AgentState:
        salvage = rebuild_state(self.paths)
        runs = salvage.state.runs
        summary = (f"rebuild it from the snapshot, the journal and the run directories: "
                   f"{counted(len(runs), 'run record')}, {sum(r.status.is_finished for r in runs)} "
                   f"finished, incumbent {salvage.state.incumbent_run_id or 'none'}")

        def apply() -> None:
            self.backup(self.paths.state, "corrupt")
            self.backup(journal_path(self.paths), "corrupt")
            self.state_backed_up = self.state_changed = True

        self.fix("error", "agent_state.json", problem, "; ".join([summary, *salvage.notes]),
                 apply)
        return salvage.state

    def check_incumbent_record(self, state: AgentState) -> None:
        run_id = state.incumbent_run_id
        if run_id is None or any(run.run_id == run_id for run in state.runs):
            return
        iteration = max((run.iteration for run in state.runs), default=0) + 1
        record = record_from_run_dir(self.paths, run_id, iteration)
        problem = f"the incumbent {run_id} has no run record"
        if record is not None:
            record.accepted = True
            self.fix("error", "agent_state.json", problem, f"rebuild its record from "
                     f"runs/{run_id}/metrics.json", partial(state.runs.append, record), True)
            return
        self.fix("error", "agent_state.json", problem, "clear the incumbent (it has no usable "
                 "run directory either); config.py keeps its config and the next run that "
                 "finishes ok becomes the incumbent",
                 partial(setattr, state, "incumbent_run_id", None), True)

    def check_runs(self, state: AgentState) -> None:
        for run in state.runs:
            subject = f"runs/{run.run_id}"
            if run.status is RunStatus.RUNNING and self.is_live:
                self.add("info", subject, "status running", "trained by the live session")
            elif run.status is RunStatus.RUNNING and finished_metrics(self.paths, run):
                self.add("info", subject, "left `running` by a process that died after its "
                         "training finished", "kept: the next `nas resume` judges its result")
            elif run.status is RunStatus.RUNNING:
                self.fix("warning", subject, "left `running` by a process that died",
                         "mark it interrupted (its iteration is redone)",
                         partial(_mark_interrupted, run), True)
            elif run.status_reason.startswith(MISSING_RUN_DIR) and self.paths.run_dir(
                    run.run_id).is_dir():
                self.check_returned_dir(run, subject)
            elif not (run.status is RunStatus.INTERRUPTED or self.paths.run_dir(
                    run.run_id).is_dir() or run.status_reason.startswith(MISSING_RUN_DIR)):
                self.check_missing_dir(state, run, subject)
            elif run.status is RunStatus.OK and self.paths.run_dir(run.run_id).is_dir():
                self.check_run_files(run, run.run_id == state.incumbent_run_id)
        recorded = {run.run_id for run in state.runs}
        for run_id in run_dir_ids(self.paths):
            if run_id not in recorded:
                self.add("info", f"runs/{run_id}", "orphaned: no run record names it (a crash "
                         "before the run was recorded, or a copied directory)",
                         "left in place; new run ids skip existing directories, so it is "
                         "never reused or overwritten")

    def check_run_files(self, run: RunRecord, is_incumbent: bool) -> None:
        """A finished run's files that the tools and the report read back."""
        run_dir = self.paths.run_dir(run.run_id)
        subject = f"runs/{run.run_id}"
        if read_metrics(run_dir)[0] is None:
            self.fix("warning", subject, "metrics.json is missing or unreadable",
                     "its record keeps the scores; a rebuilt state could not recover them",
                     None)
        try:
            history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
            if not isinstance(history, dict | list):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):
            self.fix("warning", subject, "history.json is missing or unreadable", "its curve is "
                     "lost to summarize_curve, the gate's overfitting rule and the report", None)
        if not is_incumbent:
            return
        try:
            check_config_file(run_dir / "config_used.py")
        except ConfigError as exc:
            self.fix("error", subject, f"the incumbent's config_used.py is unusable ({exc})",
                     "copy config.py over it if config.py was not edited since the incumbent "
                     "was accepted (confirmation seeds and repairs of config.py read it)", None)

    def check_missing_dir(self, state: AgentState, run: RunRecord, subject: str) -> None:
        if run.run_id == state.incumbent_run_id:
            self.fix("warning", subject, "the incumbent's run directory is missing",
                     "its config is still in config.py, so the search goes on from it, but "
                     "its curve, checkpoint and config_used.py are lost (no confirmation "
                     "seeds can be trained for it); restore the directory from a backup if "
                     "you have one", None)
            return
        self.fix("warning", subject, f"recorded as {run.status.value} but its run directory "
                 f"is missing", f"mark it crashed (\"{MISSING_RUN_DIR}\"), keeping the record "
                 f"and its metrics", partial(_mark_missing, run), True)

    def check_returned_dir(self, run: RunRecord, subject: str) -> None:
        """A run marked crashed because its directory was missing, whose directory is back:
        its status comes back when the directory's ``metrics.json`` is the run's own."""
        was = "marked crashed because its run directory was missing; the directory is back"
        previous = _status_before_missing(run.status_reason)
        if previous is None:
            self.add("info", subject, f"{was}, but its record no longer says the status it "
                     f"had", "kept crashed")
            return
        mismatch = _metrics_mismatch(self.paths.run_dir(run.run_id), run, previous[0])
        if mismatch is not None:
            self.add("info", subject, f"{was}, but {mismatch}", "kept crashed: the directory "
                     "is not this run's as recorded")
            return
        self.fix("warning", subject, f"{was} with its metrics.json", f"restore its status "
                 f"{previous[0].value}", partial(_restore_status, run, *previous), True)

    def commit_state(self, state: AgentState) -> None:
        if not self.state_backed_up:
            self.backup(self.paths.state, "bak")
            self.backup(journal_path(self.paths), "bak")
            self.state_backed_up = True
        compact_state(self.paths, state)

    def check_data(self, state: AgentState) -> None:
        """The data file must be the one the incumbent was trained on (sessions refuse
        another); nothing here can repair it."""
        try:
            config = check_config_file(self.paths.config)
        except ConfigError:
            return  # reported by check_config
        try:
            problem = data_problem(state, config)
        except HistoryCorrupt:
            return  # an incumbent id without its run: reported by the state's checks
        if problem is not None:
            self.add("error", "data", *problem)

    def check_config(self, state: AgentState | None) -> None:
        config = self.paths.config
        try:
            check_config_file(config)
        except ConfigError as exc:
            self.restore_config(state, str(exc), "error", "corrupt")
            return
        used = self.incumbent_config(state)
        if state is None or used is None or self.is_live or used.read_bytes() == (
                text := config.read_bytes()):
            return
        changed = task_changes(check_config_file(config), check_config_file(used))
        if changed:
            self.restore_config(state, f"changes the workspace's forecasting task ({changed[0]})"
                                "; sessions refuse it", "error", "bak")
            return
        other = next((r.run_id for r in reversed(state.runs) if r.run_id != state.incumbent_run_id
                      and _read(self.paths.run_dir(r.run_id) / "config_used.py") == text), None)
        if other is None:  # the session keeps a hand edit: it is the user's to make
            self.add("info", "config.py", "differs from the incumbent run's config_used.py (a "
                     "hand edit)", f"kept: the next iteration starts from it; to undo it, copy "
                     f"{used.relative_to(self.paths.root)} over config.py")
            return
        self.restore_config(state, f"holds the config of {other}, not of the incumbent "
                            f"{state.incumbent_run_id} (a crash between accepting a run and "
                            f"recording it)", "warning", "bak")

    def incumbent_config(self, state: AgentState | None) -> Path | None:
        """The incumbent's ``config_used.py`` if it exists and is valid."""
        if state is None or state.incumbent_run_id is None:
            return None
        used = self.paths.run_dir(state.incumbent_run_id) / "config_used.py"
        try:
            check_config_file(used)
        except ConfigError:
            return None
        return used

    def restore_config(self, state: AgentState | None, problem: str, severity: Severity,
                       backup_kind: str) -> None:
        used = self.incumbent_config(state)
        if used is None:
            why = ("there is no incumbent run to restore it from" if state is None
                   or state.incumbent_run_id is None else
                   f"the incumbent {state.incumbent_run_id} has no valid config_used.py")
            self.fix(severity, "config.py", problem, f"fix it by hand ({why})", None)
            return
        source = used

        def apply() -> None:
            self.backup(self.paths.config, backup_kind)
            atomic_write_bytes(self.paths.config, source.read_bytes())

        self.fix(severity, "config.py", problem,
                 f"restore it from {source.relative_to(self.paths.root)}", apply)

    def check_candidate(self, state: AgentState) -> None:
        candidate = self.paths.candidate
        if self.is_live or state.current is not None or not candidate.exists():
            return
        self.fix("warning", candidate.name, "stale: no iteration is in progress (left by a "
                 "crash after its iteration was recorded)", "remove it", candidate.unlink)

    def check_study_lock(self) -> None:
        """Optuna's lock next to the journal, left by a kill (sessions before this version
        took it): harmless now, since sessions no longer take it; removed on repair."""
        lock = self.paths.study.with_name(self.paths.study.name + ".lock")
        if self.is_live or not (lock.is_symlink() or lock.exists()):
            return
        self.fix("info", lock.name, "a lock left by a killed session (sessions no longer use it)",
                 "remove it", lock.unlink)

    def check_traces(self, state: AgentState | None) -> None:
        live = {s.trace_file for s in state.sessions[-1:]} if state and self.is_live else set()
        for path in sorted(self.paths.traces.glob("*.jsonl")):
            subject = f"traces/{path.name}"
            if subject not in live:
                self.check_trace(path, subject)

    def check_trace(self, path: Path, subject: str) -> None:
        body, tail, bad = split_json_lines(path.read_bytes())
        if bad and bad[0] == 1:
            self.fix("warning", subject, "its header (line 1) is not JSON: the trace cannot be "
                     "replayed", "a resume takes its settings from the session before; pass "
                     "--seed, --timeout or the pruning options to set them", None)
        elif bad:
            self.fix("warning", subject, f"line {bad[0]} is not JSON "
                     f"({counted(len(bad), 'such line')}): the trace cannot be replayed past it",
                     "the state, the runs and the "
                     "settings a resume reads (line 1) do not depend on it; keep it for "
                     "reading or delete it", None)
        if not tail:
            return

        def apply() -> None:
            self.backup(path, "corrupt")
            atomic_write_bytes(path, body)

        self.fix("warning", subject, f"its last line is truncated ({len(tail)} bytes: a crash "
                 f"while writing it)", "cut it after the last complete line", apply)

    def backup(self, path: Path, kind: str) -> Path | None:
        """Copy ``path`` to ``<name>.<kind>-<stamp>`` (atomically) before it is replaced."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        target, number = path.with_name(f"{path.name}.{kind}-{self.stamp}"), 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}.{kind}-{self.stamp}-{number}")
        atomic_write_bytes(target, data)
        self.report.backups.append(target)
        return target


def _mark_interrupted(run: RunRecord) -> None:
    run.status = RunStatus.INTERRUPTED
    run.status_reason = "the process died while this run was training (nas doctor)"
    run.finished_at = run.finished_at or now_iso()


def _mark_missing(run: RunRecord) -> None:
    previous = run.status.value + (f": {run.status_reason}" if run.status_reason else "")
    run.status = RunStatus.CRASHED
    run.status_reason = f"{MISSING_RUN_DIR} (was {previous})"


def _status_before_missing(reason: str) -> tuple[RunStatus, str] | None:
    """The status and reason ``_mark_missing`` kept in ``reason`` (None if unreadable)."""
    prefix = f"{MISSING_RUN_DIR} (was "
    if not (reason.startswith(prefix) and reason.endswith(")")):
        return None
    status, _, before = reason[len(prefix):-1].partition(": ")
    try:
        return RunStatus(status), before
    except ValueError:
        return None


def _metrics_mismatch(run_dir: Path, run: RunRecord, status: RunStatus) -> str | None:
    """Why ``run_dir/metrics.json`` is not the metrics ``run`` recorded (None: it is)."""
    metrics, problem = read_metrics(run_dir)
    if metrics is None:
        return problem
    for key, recorded in (("status", status.value), ("seed", run.seed),
                          ("val_mse", run.val_mse), ("test_mse", run.test_mse)):
        value = metrics.get(key, recorded) if key == "seed" else metrics.get(key)
        if key.endswith("_mse"):
            value = finite_number(value)
        if value != recorded:
            return f"its metrics.json says {key} {value!r}, the record {recorded!r}"
    return None


def _restore_status(run: RunRecord, status: RunStatus, reason: str) -> None:
    run.status = status
    run.status_reason = reason


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
