"""The doctor's checks of ``agent_state.json`` and the run records against the run
directories: rebuilding an unreadable state, the incumbent's record, runs left ``running``,
run directories missing or back, and a finished run's files."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from informer_nas.errors import ConfigError, HistoryCorrupt
from informer_nas.nas_system.config_file import check_config_file
from informer_nas.nas_system.doctor_findings import DoctorBase
from informer_nas.nas_system.executor import read_metrics
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.recovery import finished_metrics
from informer_nas.nas_system.salvage import (
    finite_number,
    rebuild_state,
    record_from_run_dir,
    run_dir_ids,
    snapshot_version,
)
from informer_nas.nas_system.state import (
    SCHEMA_VERSION,
    AgentState,
    compact_state,
    journal_path,
    load_state,
    now_iso,
)
from informer_nas.plurals import counted

MISSING_RUN_DIR = "run directory missing"


class StateChecks(DoctorBase):
    """The checks of the state and the run records (``doctor._Doctor`` adds the files')."""

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

