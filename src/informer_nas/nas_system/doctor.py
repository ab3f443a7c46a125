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

This module holds ``diagnose`` and the checks of the workspace's files; the checks of the
state and its run records are ``doctor_state.py``'s, the findings, the report and the
repair-and-backup means they share ``doctor_findings.py``'s.
"""

from __future__ import annotations

from pathlib import Path

from informer_nas.errors import ConfigError, HistoryCorrupt, NasError, WorkspaceLocked
from informer_nas.nas_system.atomic import atomic_write_bytes
from informer_nas.nas_system.config_file import check_config_file
from informer_nas.nas_system.doctor_findings import DoctorReport, Finding, Severity
from informer_nas.nas_system.doctor_state import StateChecks
from informer_nas.nas_system.lock import lock_status
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.salvage import split_json_lines
from informer_nas.nas_system.state import AgentState, workspace_lock
from informer_nas.nas_system.task import data_problem, task_changes
from informer_nas.plurals import counted


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


class _Doctor(StateChecks):
    """The whole pass: the state's checks (``StateChecks``), then the files'."""

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

    # -- config.py, candidate.py, data, the study's lock, traces ---------------------------

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
        named = {s.trace_file for s in state.sessions} if state else set()
        for path in self.paths.trace_files():
            subject = f"traces/{path.name}"
            if subject in live:
                continue
            if path.stat().st_size == 0 and subject not in named:
                # a session killed before its header line: no state names it, nothing in it
                self.fix("info", subject, "empty: a session killed as it started recorded "
                         "nothing", "delete it", path.unlink)
                continue
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


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
