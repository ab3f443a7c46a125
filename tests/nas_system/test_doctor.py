"""nas doctor: each kind of damage explained, repaired atomically, no completed run lost."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from informer_nas.errors import ConfigError, HistoryCorrupt, NasError
from informer_nas.informer.presets import preset_config
from informer_nas.nas_system.config_file import render_config
from informer_nas.nas_system.doctor import DoctorReport, diagnose
from informer_nas.nas_system.doctor_state import MISSING_RUN_DIR
from informer_nas.nas_system.lock import LockHolder
from informer_nas.nas_system.records import RunRecord, RunStatus
from informer_nas.nas_system.runs import new_run_id
from informer_nas.nas_system.state import (
    IterationScratch,
    SessionInfo,
    compact_state,
    journal_path,
    load_state,
    now_iso,
    save_state,
    workspace_lock,
)
from informer_nas.nas_system.workspace import Workspace


class Bench:
    """A tiny workspace with fake finished runs (no training): dirs, metrics, configs."""

    def __init__(self, root: Path) -> None:
        self.workspace = Workspace.create(root, "tiny")
        self.paths = self.workspace.paths
        self.state = load_state(self.paths)
        self.state.max_iterations = 6
        save_state(self.paths, self.state)

    def add_run(self, val_mse: float, accepted: bool = False,
                status: RunStatus = RunStatus.OK) -> RunRecord:
        state = self.state
        run_id = new_run_id(state, self.paths)
        seed = int(run_id[-4:])
        record = RunRecord(run_id=run_id, iteration=state.iteration + 1, status=status,
                           val_mse=val_mse, test_mse=val_mse * 1.1, seed=seed,
                           verdict="accept" if accepted else "reject", accepted=accepted,
                           decided_by="rules", started_at=now_iso(), finished_at=now_iso())
        state.runs.append(record)
        state.iteration += 1
        run_dir = self.paths.run_dir(run_id)
        run_dir.mkdir(parents=True)
        config = preset_config("tiny").to_dict()
        config["training"]["seed"] = seed
        text = render_config(type(preset_config("tiny")).model_validate(config))
        (run_dir / "config_used.py").write_text(text)
        (run_dir / "history.json").write_text(json.dumps({"epochs": [
            {"epoch": 1, "train_loss": 1.0, "val_loss": val_mse, "val_mse": val_mse}]}))
        (run_dir / "metrics.json").write_text(json.dumps({
            "status": status.value, "reason": "", "val_mse": val_mse, "val_mae": None,
            "test_mse": val_mse * 1.1, "test_mae": None, "seed": seed, "train_seconds": 2.5,
        }))
        if accepted:
            self.paths.config.write_text(text)
            state.incumbent_run_id = run_id
        save_state(self.paths, state)
        return record

    def completed(self) -> set[tuple[str, float | None]]:
        """(run id, val MSE) of every finished run, as the state on disk says."""
        return {(r.run_id, r.val_mse) for r in load_state(self.paths).runs
                if r.status.is_finished}

    def files(self) -> dict[str, bytes]:
        """Every file's bytes, but the lock's (taken by creation and by --repair, left
        empty)."""
        root = self.paths.root
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file() and p != self.paths.lock}


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    bench = Bench(tmp_path / "ws")
    bench.add_run(0.9, accepted=True)
    bench.add_run(0.95)
    bench.add_run(0.7, accepted=True)
    bench.add_run(0.8)
    return bench


def subjects(report: DoctorReport, open_only: bool = True) -> list[str]:
    return [f.subject for f in report.findings if f.is_open or not open_only]


def assert_healthy_now(bench: Bench) -> None:
    again = diagnose(bench.paths.root)
    assert again.is_healthy, again.lines()
    load_state(bench.paths)
    Workspace.open(bench.paths.root)


def test_a_healthy_workspace_is_healthy_and_untouched(bench: Bench) -> None:
    before = bench.files()
    for repair in (False, True):
        report = diagnose(bench.paths.root, repair=repair)
        assert report.is_healthy and report.findings == [] and report.backups == []
        assert report.lines()[-1].endswith("healthy (0 repaired)")
    assert bench.files() == before


def test_diagnosis_alone_never_writes(bench: Bench) -> None:
    bench.paths.state.write_text("{garbage")
    bench.paths.candidate.write_text("stale")
    (bench.paths.traces / "s.jsonl").write_bytes(b'{"kind": "header"}\n{"kind": "ev')
    before = bench.files()
    report = diagnose(bench.paths.root)
    assert not report.is_healthy and report.backups == []
    assert "repair with `nas doctor --workspace" in report.lines()[-1]
    assert bench.files() == before


def test_a_garbled_snapshot_is_rebuilt_from_the_journal_and_backed_up(bench: Bench) -> None:
    completed = bench.completed()
    assert journal_path(bench.paths).exists()  # the runs live in the journal, not the snapshot
    garbage = b"not json at all {"
    bench.paths.state.write_bytes(garbage)
    with pytest.raises(HistoryCorrupt, match=r"run `nas doctor --workspace .*` to explain"):
        load_state(bench.paths)
    report = diagnose(bench.paths.root, repair=True)
    finding = next(f for f in report.findings if f.subject == "agent_state.json")
    assert finding.repaired and "not valid JSON" in finding.problem
    assert "4 run records, 4 finished, incumbent run_0002" in finding.action
    backup = next(p for p in report.backups if p.name.startswith("agent_state.json.corrupt-"))
    assert backup.read_bytes() == garbage
    assert any(p.name.startswith("agent_state.journal.corrupt-") for p in report.backups)
    state = load_state(bench.paths)
    assert bench.completed() == completed
    assert (state.incumbent_run_id, state.preset, state.max_iterations) == ("run_0002", "tiny", 6)
    assert state.iteration == 4 and state.next_run_number == 4
    assert_healthy_now(bench)


def test_a_truncated_snapshot_keeps_every_run_from_it_and_the_run_dirs(bench: Bench) -> None:
    compact_state(bench.paths, bench.state)  # all runs in the snapshot, no journal
    completed = bench.completed()
    text = bench.paths.state.read_bytes()
    bench.paths.state.write_bytes(text[: int(len(text) * 0.6)])  # torn inside the runs
    report = diagnose(bench.paths.root, repair=True)
    assert report.is_healthy, report.lines()
    action = next(f.action for f in report.findings if f.subject == "agent_state.json")
    assert "complete run records from it" in action and "from their run directories" in action
    state = load_state(bench.paths)
    assert bench.completed() == completed
    assert state.incumbent_run_id == "run_0002" and state.preset == "tiny"
    rebuilt = [r for r in state.runs if "rebuilt by nas doctor" in r.status_reason]
    assert rebuilt and all(r.status is RunStatus.OK for r in rebuilt)
    assert state.runs[0].verdict == "accept"  # records read from the snapshot keep everything
    assert_healthy_now(bench)


def test_a_record_failing_the_schema_comes_back_from_its_run_dir(bench: Bench) -> None:
    compact_state(bench.paths, bench.state)
    raw = json.loads(bench.paths.state.read_text())
    raw["runs"][1]["status"] = "exploded"
    bench.paths.state.write_text(json.dumps(raw))
    with pytest.raises(HistoryCorrupt, match="does not match the state schema"):
        load_state(bench.paths)
    diagnose(bench.paths.root, repair=True)
    run = load_state(bench.paths).runs[1]
    assert (run.run_id, run.status, run.val_mse) == ("run_0001", RunStatus.OK, 0.95)
    assert_healthy_now(bench)


def test_runs_that_are_not_a_list_are_a_schema_error_doctor_repairs(bench: Bench) -> None:
    compact_state(bench.paths, bench.state)
    bench.add_run(0.85)  # a journal line to replay onto the snapshot's runs
    completed = bench.completed()
    raw = json.loads(bench.paths.state.read_text())
    raw["runs"] = {}
    bench.paths.state.write_text(json.dumps(raw))
    with pytest.raises(HistoryCorrupt, match="does not match the state schema"):
        load_state(bench.paths)
    diagnose(bench.paths.root, repair=True)
    assert bench.completed() == completed
    assert_healthy_now(bench)


def test_a_lost_journal_is_noticed_and_its_runs_rebuilt(bench: Bench) -> None:
    """agent_state.json alone (a backup without the journal): the finished runs come back
    from their run directories instead of vanishing from a "healthy" workspace."""
    completed = bench.completed()
    journal_path(bench.paths).unlink()
    assert load_state(bench.paths).runs == []
    looked = diagnose(bench.paths.root)
    assert not looked.is_healthy
    assert any("4 finished runs have no record" in f.problem for f in looked.findings)
    diagnose(bench.paths.root, repair=True)
    assert bench.completed() == completed
    assert_healthy_now(bench)


def test_a_garbled_journal_line_is_skipped_and_the_later_lines_kept(bench: Bench) -> None:
    completed = bench.completed()
    journal = journal_path(bench.paths)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b"}}garbage{{\n" + b"".join(lines[1:]))
    with pytest.raises(HistoryCorrupt, match=r"journal:2 is not a valid journal entry.*nas doctor"):
        load_state(bench.paths)
    report = diagnose(bench.paths.root, repair=True)
    assert any("1 unreadable line skipped" in f.action for f in report.findings)
    assert bench.completed() == completed
    assert_healthy_now(bench)


def test_a_missing_state_file_is_rebuilt_from_the_run_directories(bench: Bench) -> None:
    completed = bench.completed()
    bench.paths.state.unlink()
    journal_path(bench.paths).unlink()
    with pytest.raises(NasError, match="damaged informer-nas workspace.*nas doctor"):
        Workspace.open(bench.paths.root)
    report = diagnose(bench.paths.root, repair=True)
    action = next(f.action for f in report.findings if f.subject == "agent_state.json")
    assert "incumbent run_0002: the run whose config_used.py equals config.py" in action
    assert "preset 'tiny': the one whose window caps config.py has" in action
    state = load_state(bench.paths)
    assert state.preset == "tiny"
    assert bench.completed() == completed
    assert state.incumbent_run_id == "run_0002" and state.next_run_number == 4
    assert [r.iteration for r in state.runs] == [1, 2, 3, 4] and state.iteration == 4
    assert_healthy_now(bench)


def test_a_lost_state_takes_the_runs_verdicts_from_the_session_traces(bench: Bench) -> None:
    """Rebuilt runs lost their verdicts and accept flags (status showed "-", progress.png
    started its incumbent line at the last incumbent), though the traces recorded them."""
    judged = {run.run_id: run for run in bench.state.runs}
    events = [{"kind": "event", "name": "verdict", "run_id": run.run_id,
               "iteration": run.iteration, "verdict": run.verdict, "accepted": run.accepted,
               "decided_by": run.decided_by, "reason": f"reason of {run.run_id}",
               "changes": [{"key": "model.dropout", "value": 0.1}], "step_type": "small"}
              for run in judged.values() if run.run_id != "run_0003"]  # its event was lost
    bench.paths.traces.mkdir(exist_ok=True)
    (bench.paths.traces / "20261127T000000-tpe-1.jsonl").write_text(
        "".join(json.dumps(event) + "\n" for event in events) + "{torn")  # a torn write
    bench.paths.state.unlink()
    journal_path(bench.paths).unlink()
    report = diagnose(bench.paths.root, repair=True)
    action = next(f.action for f in report.findings if f.subject == "agent_state.json")
    assert "iterations and verdicts of 3 from the session traces" in action
    assert "no verdict for 1" in action
    state = load_state(bench.paths)
    for run in state.runs[:3]:
        was = judged[run.run_id]
        assert (run.iteration, run.verdict, run.accepted, run.decided_by) == (
            was.iteration, was.verdict, was.accepted, was.decided_by)
        assert run.verdict_reason == f"reason of {run.run_id}" and run.step_type == "small"
    assert [run.accepted for run in state.runs] == [True, False, True, None]
    assert state.runs[3].verdict is None and state.incumbent_run_id == "run_0002"
    assert_healthy_now(bench)


def test_a_lost_state_takes_its_search_space_from_the_last_trace(bench: Bench) -> None:
    narrowing = {"model.d_model": {"choices": [16, 32]}}
    bench.paths.traces.mkdir(exist_ok=True)
    (bench.paths.traces / "20261127T000000-tpe-1.jsonl").write_text(json.dumps(
        {"kind": "header", "state": {"preset": "quick", "narrowing": narrowing}}) + "\n")
    bench.paths.state.unlink()
    journal_path(bench.paths).unlink()
    diagnose(bench.paths.root, repair=True)
    state = load_state(bench.paths)
    assert state.preset == "quick" and state.narrowing == narrowing


def test_damaged_files_of_finished_runs_are_reported(bench: Bench) -> None:
    (bench.paths.run_dir("run_0001") / "history.json").write_text('{"epochs": [')
    (bench.paths.run_dir("run_0003") / "metrics.json").write_text("")
    (bench.paths.run_dir("run_0002") / "config_used.py").write_text("CONFIG = (\n")
    report = diagnose(bench.paths.root)
    problems = {(f.subject, f.problem.split(" (")[0]) for f in report.findings if f.is_open}
    assert problems == {("runs/run_0001", "history.json is missing or unreadable"),
                        ("runs/run_0003", "metrics.json is missing or unreadable"),
                        ("runs/run_0002", "the incumbent's config_used.py is unusable")}
    assert not report.is_healthy


def test_a_newer_schema_is_never_touched(bench: Bench) -> None:
    bench.paths.state.write_text('{"schema_version": 99}')
    before = bench.files()
    report = diagnose(bench.paths.root, repair=True)
    assert not report.is_healthy
    assert "upgrade informer-nas" in report.findings[0].action
    assert bench.files() == before


def test_runs_left_running_are_marked_interrupted(bench: Bench) -> None:
    record = bench.add_run(0.6, status=RunStatus.RUNNING)
    assert diagnose(bench.paths.root).findings[0].severity == "warning"
    report = diagnose(bench.paths.root, repair=True)
    assert subjects(report, open_only=False) == [f"runs/{record.run_id}"]
    assert any(p.name.startswith("agent_state.json.bak-") for p in report.backups)
    assert load_state(bench.paths).runs[-1].status is RunStatus.INTERRUPTED
    assert_healthy_now(bench)


def test_run_left_running_after_its_training_finished_is_kept(bench: Bench) -> None:
    """Killed between the trainer's metrics.json and the run's record: not redone."""
    record = bench.add_run(0.6, status=RunStatus.RUNNING)
    metrics_path = bench.paths.run_dir(record.run_id) / "metrics.json"
    metrics_path.write_text(json.dumps({**json.loads(metrics_path.read_text()), "status": "ok"}))
    state = load_state(bench.paths)
    state.runs[-1].verdict = state.runs[-1].accepted = state.runs[-1].decided_by = None
    save_state(bench.paths, state)
    report = diagnose(bench.paths.root, repair=True)
    finding = next(f for f in report.findings if f.subject == f"runs/{record.run_id}")
    assert finding.severity == "info" and "judges its result" in finding.action
    assert report.is_healthy and load_state(bench.paths).runs[-1].status is RunStatus.RUNNING


def test_a_live_session_is_left_alone(bench: Bench) -> None:
    bench.add_run(0.6, status=RunStatus.RUNNING)
    bench.paths.candidate.write_text("in progress")
    with workspace_lock(bench.paths):
        report = diagnose(bench.paths.root, repair=True)
        looked = diagnose(bench.paths.root)
    assert any("in use by this process" in f.problem and "nothing was repaired" in f.action
               for f in report.findings)
    assert not report.is_healthy and looked.is_healthy, looked.lines()
    assert load_state(bench.paths).runs[-1].status is RunStatus.RUNNING
    assert bench.paths.candidate.exists()


def test_a_stale_lock_is_reported_as_harmless(bench: Bench) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = LockHolder(dead.pid, socket.gethostname(), now_iso())
    bench.paths.lock.write_text(holder.to_json())
    report = diagnose(bench.paths.root)
    assert report.is_healthy
    assert f"left by pid {dead.pid}" in report.findings[0].problem
    assert "takes it over" in report.findings[0].action


def test_a_missing_run_directory_marks_the_run_crashed(bench: Bench) -> None:
    run_dir = bench.paths.run_dir("run_0001")
    for path in run_dir.iterdir():
        path.unlink()
    run_dir.rmdir()
    report = diagnose(bench.paths.root, repair=True)
    assert [f.subject for f in report.findings] == ["runs/run_0001"]
    run = load_state(bench.paths).runs[1]
    assert run.status is RunStatus.CRASHED and run.val_mse == 0.95  # the record is kept
    assert run.status_reason.startswith(MISSING_RUN_DIR) and "was ok" in run.status_reason
    assert_healthy_now(bench)


def unmount(bench: Bench, run_id: str, tmp_path: Path) -> Path:
    """Move a run directory away and let `nas doctor --repair` mark the run crashed."""
    away = tmp_path / "unmounted" / run_id
    away.parent.mkdir(exist_ok=True)
    bench.paths.run_dir(run_id).rename(away)
    diagnose(bench.paths.root, repair=True)
    assert load_state(bench.paths).runs[int(run_id[-4:])].status is RunStatus.CRASHED
    return away


def test_a_run_marked_crashed_gets_its_status_back_with_its_directory(
        bench: Bench, tmp_path: Path) -> None:
    """A remounted disk: the run stayed "crashed" for good, and the doctor called the
    workspace healthy; it now says the directory is back and --repair restores the run."""
    unmount(bench, "run_0001", tmp_path).rename(bench.paths.run_dir("run_0001"))
    looked = diagnose(bench.paths.root)
    finding = next(f for f in looked.findings if f.subject == "runs/run_0001")
    assert not looked.is_healthy and "the directory is back" in finding.problem
    assert finding.action == "`nas doctor --repair` will restore its status ok"
    assert load_state(bench.paths).runs[1].status is RunStatus.CRASHED  # only looked
    diagnose(bench.paths.root, repair=True)
    run = load_state(bench.paths).runs[1]
    assert (run.status, run.status_reason, run.val_mse, run.verdict) == (
        RunStatus.OK, "", 0.95, "reject")
    assert_healthy_now(bench)


def test_a_returned_directory_with_other_metrics_keeps_the_run_crashed(
        bench: Bench, tmp_path: Path) -> None:
    # another run's directory put in its place: its scores are not this run's
    away = unmount(bench, "run_0001", tmp_path)
    shutil.copytree(bench.paths.run_dir("run_0003"), bench.paths.run_dir("run_0001"))
    report = diagnose(bench.paths.root, repair=True)
    finding = next(f for f in report.findings if f.subject == "runs/run_0001")
    assert finding.severity == "info" and "its metrics.json says seed 3" in finding.problem
    assert load_state(bench.paths).runs[1].status is RunStatus.CRASHED and away.is_dir()
    assert_healthy_now(bench)


def test_a_missing_incumbent_directory_is_explained_not_repaired(bench: Bench) -> None:
    run_dir = bench.paths.run_dir("run_0002")
    for path in run_dir.iterdir():
        path.unlink()
    run_dir.rmdir()
    report = diagnose(bench.paths.root, repair=True)
    finding = next(f for f in report.findings if f.subject == "runs/run_0002")
    assert finding.is_open and "its config is still in config.py" in finding.action
    assert load_state(bench.paths).runs[2].status is RunStatus.OK


def test_orphaned_run_directories_are_reported_and_left(bench: Bench) -> None:
    orphan = bench.paths.run_dir("run_0009")
    orphan.mkdir()
    report = diagnose(bench.paths.root, repair=True)
    assert report.is_healthy and orphan.is_dir()
    assert report.findings[0].subject == "runs/run_0009"
    assert "never reused" in report.findings[0].action


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        # a call: refused as not a literal, with its line
        (lambda text: text.replace('"d_model": 16,', '"d_model": int("16"),'),
         '`int("16")` is not a literal'),
        # an import after CONFIG
        (lambda text: text + "import os\n", "found `import os`"),
        # a schema failure names the key's line
        (lambda text: text.replace('"dropout": 0.05,', '"dropout": 7.0,'), "model.dropout"),
    ],
    ids=["call", "import", "schema"],
)
def test_a_broken_config_is_restored_from_the_incumbent(
    bench: Bench, edit: Callable[[str], str], fragment: str
) -> None:
    good = bench.paths.config.read_text()
    broken = edit(good)
    bench.paths.config.write_text(broken)
    line = next(n for n, (a, b) in enumerate(
        zip(broken.splitlines() + [""], good.splitlines() + [""], strict=False), 1) if a != b)
    with pytest.raises(ConfigError, match=rf"config.py:{line}: .*nas doctor"):
        Workspace.open(bench.paths.root)
    report = diagnose(bench.paths.root, repair=True)
    finding = report.findings[0]
    assert fragment in finding.problem and f"config.py:{line}:" in finding.problem
    assert finding.action == "restore it from runs/run_0002/config_used.py"
    assert bench.paths.config.read_text() == good
    backup = next(p for p in report.backups if p.name.startswith("config.py.corrupt-"))
    assert backup.read_text() == broken
    assert_healthy_now(bench)


def test_a_broken_config_without_an_incumbent_is_explained(tmp_path: Path) -> None:
    bench = Bench(tmp_path / "ws")
    bench.paths.config.write_text("CONFIG = {}\nCONFIG2 = 1\n")
    report = diagnose(bench.paths.root, repair=True)
    assert report.findings[0].action.startswith("not repairable: fix it by hand (there is no")


def test_a_torn_accept_is_undone_but_a_hand_edit_is_kept(bench: Bench) -> None:
    incumbent = bench.paths.config.read_text()
    # config.py holds run_0003's config but the state never recorded it as accepted.
    torn = (bench.paths.run_dir("run_0003") / "config_used.py").read_text()
    bench.paths.config.write_text(torn)
    report = diagnose(bench.paths.root, repair=True)
    assert "holds the config of run_0003, not of the incumbent run_0002" in (
        report.findings[0].problem)
    assert bench.paths.config.read_text() == incumbent
    assert any(p.name.startswith("config.py.bak-") for p in report.backups)
    # A valid hand edit is the user's choice (the session trains from it): kept.
    edited = incumbent.replace('"d_model": 16,', '"d_model": 32,')
    bench.paths.config.write_text(edited)
    report = diagnose(bench.paths.root, repair=True)
    assert report.is_healthy and report.findings[0].severity == "info"
    assert "copy runs/run_0002/config_used.py over config.py" in report.findings[0].action
    assert bench.paths.config.read_text() == edited


def test_a_stale_candidate_is_removed_but_not_one_in_progress(bench: Bench) -> None:
    bench.paths.candidate.write_text("leftover")
    assert diagnose(bench.paths.root, repair=True).findings[0].action == "remove it"
    assert not bench.paths.candidate.exists()
    bench.state.current = IterationScratch(iteration=5)
    save_state(bench.paths, bench.state)
    bench.paths.candidate.write_text("being edited")
    assert diagnose(bench.paths.root, repair=True).is_healthy
    assert bench.paths.candidate.exists()


def test_a_truncated_trace_line_is_cut_with_a_backup(bench: Bench) -> None:
    trace = bench.paths.traces / "20250101-tpe-1.jsonl"
    complete = b'{"kind": "header"}\n{"kind": "event", "name": "plan"}\n'
    trace.write_bytes(complete + b'{"kind": "event", "na')
    report = diagnose(bench.paths.root, repair=True)
    assert report.findings[0].problem.startswith("its last line is truncated (21 bytes")
    assert trace.read_bytes() == complete
    assert next(iter(report.backups)).read_bytes().startswith(complete)
    garbled = bench.paths.traces / "other.jsonl"
    garbled.write_bytes(b'{"kind": "header"}\nnot json\n{"kind": "event"}\n')
    finding = diagnose(bench.paths.root, repair=True).findings[0]
    assert finding.is_open and finding.problem.startswith("line 2 is not JSON")


def test_an_empty_trace_no_session_names_is_deleted_on_repair(bench: Bench) -> None:
    # a session killed after creating its trace, before the header line and the state save
    bench.paths.traces.mkdir(exist_ok=True)
    orphan = bench.paths.traces / "20261127T000000-tpe-9.jsonl"
    orphan.write_bytes(b"")
    finding = diagnose(bench.paths.root).findings[0]
    assert (finding.subject, finding.severity) == ("traces/" + orphan.name, "info")
    assert finding.problem.startswith("empty") and orphan.exists()  # diagnosis writes nothing
    diagnose(bench.paths.root, repair=True)
    assert not orphan.exists()
    assert_healthy_now(bench)


def test_an_empty_trace_the_state_names_is_kept(bench: Bench) -> None:
    bench.paths.traces.mkdir(exist_ok=True)
    named = bench.paths.traces / "20261127T000000-tpe-1.jsonl"
    named.write_bytes(b"")
    bench.state.sessions.append(SessionInfo(session_id="20261127T000000-tpe-1",
                                            started_at="2026-11-27T00:00:00+00:00",
                                            planner="tpe", trace_file="traces/" + named.name))
    save_state(bench.paths, bench.state)
    diagnose(bench.paths.root, repair=True)
    assert named.exists()


def test_a_crash_during_repair_leaves_the_original_and_a_rerun_finishes(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    completed = bench.completed()
    bench.paths.state.write_text("{torn")
    real_replace = os.replace

    def crash_on_state(source: object, target: object) -> None:
        if Path(str(target)).name == "agent_state.json":
            raise OSError("simulated power cut")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", crash_on_state)
    with pytest.raises(OSError, match="power cut"):
        diagnose(bench.paths.root, repair=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert bench.paths.state.read_text() == "{torn"
    diagnose(bench.paths.root, repair=True)
    assert bench.completed() == completed
    assert_healthy_now(bench)


def test_a_directory_that_is_not_a_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NasError, match="is not an informer-nas workspace"):
        diagnose(tmp_path)


def test_the_errors_users_hit_first_point_to_nas_doctor(bench: Bench) -> None:
    bench.paths.state.write_text("[1]")
    with pytest.raises(HistoryCorrupt) as caught:
        load_state(bench.paths)
    assert str(caught.value).endswith(
        f"run `nas doctor --workspace {bench.paths.root}` to explain and repair")
