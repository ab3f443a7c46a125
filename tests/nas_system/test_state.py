"""Durable state: round trips, the journal, refusals, run ids, interruption, atomicity, lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from informer_nas.errors import HistoryCorrupt, WorkspaceLocked
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.records import ConfigChange, RunRecord, RunStatus
from informer_nas.nas_system.runs import find_run, incumbent, mark_interrupted, new_run_id
from informer_nas.nas_system.state import (
    AgentState,
    IterationScratch,
    compact_state,
    journal_path,
    load_state,
    save_state,
    workspace_lock,
)


@pytest.fixture
def paths(tmp_path: Path) -> WorkspacePaths:
    paths = WorkspacePaths(tmp_path)
    paths.runs.mkdir()
    compact_state(paths, AgentState(preset="tiny", max_iterations=5))
    return paths


def add_run(state: AgentState, status: RunStatus = RunStatus.OK, val_mse: float = 0.5) -> RunRecord:
    run = RunRecord(run_id=new_run_id(state), iteration=state.iteration + 1, status=status,
                    val_mse=val_mse, changes=[ConfigChange(key="model.d_model", value=32)])
    state.runs.append(run)
    return run


def test_round_trip_through_journal_and_snapshot(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    add_run(state)
    state.current = IterationScratch(iteration=1, rationale="wider")
    save_state(paths, state)
    assert journal_path(paths).exists()
    assert load_state(paths) == state
    compact_state(paths, state)
    assert not journal_path(paths).exists()
    assert load_state(paths) == state


def test_save_appends_a_line_of_constant_size_as_runs_accumulate(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    for _ in range(300):
        add_run(state)
    compact_state(paths, state)
    state = load_state(paths)
    snapshot = paths.state.read_bytes()
    sizes = []
    for _ in range(5):
        before = journal_path(paths).stat().st_size if journal_path(paths).exists() else 0
        add_run(state)
        save_state(paths, state)
        sizes.append(journal_path(paths).stat().st_size - before)
    assert paths.state.read_bytes() == snapshot  # no full rewrite
    assert max(sizes) < 3_000 and max(sizes) - min(sizes) < 50
    assert len(load_state(paths).runs) == 305


def test_changes_to_recent_and_replaced_runs_are_persisted(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    for _ in range(40):
        add_run(state)
    save_state(paths, state)
    state.runs[-1].verdict = "accept"  # in place, a recent run
    state.runs[-1].seeds = []
    state.runs[2] = state.runs[2].model_copy(update={"verdict_reason": "replaced"})  # old run
    save_state(paths, state)
    loaded = load_state(paths)
    assert loaded.runs[-1].verdict == "accept"
    assert loaded.runs[2].verdict_reason == "replaced"
    assert loaded == state


def test_compaction_happens_when_the_journal_outgrows_the_snapshot(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    generation = state.generation
    for _ in range(200):
        add_run(state)
        save_state(paths, state)
    assert state.generation > generation
    assert load_state(paths) == state


def test_a_torn_last_journal_line_is_ignored_then_cut(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    add_run(state)
    save_state(paths, state)
    with journal_path(paths).open("ab") as journal:
        journal.write(b'{"g": 1, "head": {"iterat')  # kill -9 during an append
    assert load_state(paths) == state
    add_run(state)
    save_state(paths, state)
    assert load_state(paths) == state
    assert all(json.loads(line) for line in journal_path(paths).read_bytes().splitlines())


def two_journal_lines(paths: WorkspacePaths) -> list[bytes]:
    """Save two runs, one journal line each; return the lines (newlines kept)."""
    state = load_state(paths)
    for _ in range(2):
        add_run(state)
        save_state(paths, state)
    return journal_path(paths).read_bytes().splitlines(keepends=True)


def test_a_corrupt_last_journal_line_with_its_newline_is_refused(paths: WorkspacePaths) -> None:
    """An append is one write ending in its newline: a crash cannot leave a whole bad line.
    Taking it for a torn write dropped the last update (8/8 iterations showed 7/8) while
    doctor said healthy."""
    lines = two_journal_lines(paths)
    journal_path(paths).write_bytes(lines[0] + b'{"g": 1, "runs": [{"run_id": \n')
    with pytest.raises(HistoryCorrupt, match=r"agent_state.journal:2 is not a valid journal"):
        load_state(paths)


def test_a_corrupt_journal_line_in_the_middle_is_refused(paths: WorkspacePaths) -> None:
    lines = two_journal_lines(paths)
    journal_path(paths).write_bytes(b"garbage\n" + lines[1])
    with pytest.raises(HistoryCorrupt, match=r"agent_state.journal:1 is not a valid journal"):
        load_state(paths)


def test_a_journal_older_than_the_snapshot_is_ignored(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    add_run(state)
    save_state(paths, state)
    stale = journal_path(paths).read_bytes()
    state.iteration = 7
    compact_state(paths, state)
    journal_path(paths).write_bytes(stale)  # crash between snapshot rename and journal unlink
    assert load_state(paths).iteration == 7


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        # a truncated or garbled file: refused, never overwritten
        ('{"schema_version": 1, "runs": [', "is not valid JSON (line 1"),
        # written by a newer release
        ('{"schema_version": 2}', "schema_version 2, newer than this informer-nas supports"),
        # JSON, but not the schema
        ('{"schema_version": 1, "iteration": "three"}', "does not match the state schema"),
        # not an object at all
        ("[1, 2]", "must hold a JSON object"),
        # a change's value that is no config value: one problem, not one per type it is not
        ('{"schema_version": 1, "current": {"iteration": 1, "changes": [{"key": "model.attn", '
         '"value": {"a": 1}}]}}', "schema: current.changes.0.value: must be a number, a string, "
         "a boolean or null, not a dict; it was left untouched"),
    ],
    ids=["corrupt-json", "newer-version", "bad-schema", "not-an-object", "dict-value"],
)
def test_bad_state_files_are_refused_and_left_alone(
    paths: WorkspacePaths, content: str, fragment: str
) -> None:
    paths.state.write_text(content)
    with pytest.raises(HistoryCorrupt, match=fragment.replace("(", r"\(")):
        load_state(paths)
    assert paths.state.read_text() == content


def test_a_missing_state_file_points_to_nas_init(tmp_path: Path) -> None:
    with pytest.raises(HistoryCorrupt, match="nas init"):
        load_state(WorkspacePaths(tmp_path))


def test_run_ids_are_never_reused(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    assert [new_run_id(state) for _ in range(3)] == ["run_0000", "run_0001", "run_0002"]
    save_state(paths, state)
    state = load_state(paths)
    assert new_run_id(state) == "run_0003"  # allocated ids survive a reload, used or not
    state.next_run_number = 0  # a damaged counter still never hands out a known id
    state.runs.append(RunRecord(run_id="run_0000", iteration=1))
    paths.run_dir("run_0001").mkdir()  # left by a crash before the state was saved
    assert new_run_id(state, paths) == "run_0002"


def test_runs_left_running_are_marked_interrupted(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    add_run(state)
    running = add_run(state, status=RunStatus.RUNNING)
    save_state(paths, state)
    state = load_state(paths)  # as after a crash
    found = mark_interrupted(state)
    assert [run.run_id for run in found] == [running.run_id]
    save_state(paths, state)
    statuses = [run.status for run in load_state(paths).runs]
    assert statuses == [RunStatus.OK, RunStatus.INTERRUPTED]


def test_incumbent_and_find_run(paths: WorkspacePaths) -> None:
    state = load_state(paths)
    assert incumbent(state) is None
    run = add_run(state)
    state.incumbent_run_id = run.run_id
    assert incumbent(state) is run
    with pytest.raises(Exception, match="unknown run id 'run_9999'; known runs: run_0000"):
        find_run(state, "run_9999")
    state.incumbent_run_id = "run_0042"
    with pytest.raises(HistoryCorrupt, match="nas doctor"):
        incumbent(state)


def test_a_crash_between_write_and_rename_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config.py"
    target.write_text("original\n")

    def crash(*args: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.py"]


def test_a_failed_verification_keeps_the_original(tmp_path: Path) -> None:
    target = tmp_path / "config.py"
    target.write_text("original\n")

    def refuse(temp: Path) -> None:
        assert temp.read_text() == "new\n" and temp.parent == tmp_path
        raise ValueError("bad")

    with pytest.raises(ValueError):
        atomic_write_text(target, "new\n", verify=refuse)
    assert target.read_text() == "original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.py"]


HOLDER = """
import sys
from pathlib import Path
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.state import workspace_lock
with workspace_lock(WorkspacePaths(Path(sys.argv[1]))):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def start_holder(root: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"  # the event: it holds the lock now
    return holder


def test_a_second_process_is_refused_with_the_holder_pid(paths: WorkspacePaths) -> None:
    holder = start_holder(paths.root)
    try:
        with pytest.raises(WorkspaceLocked, match=rf"pid {holder.pid} on .*`kill {holder.pid}`"):
            with workspace_lock(paths):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with workspace_lock(paths) as mine:  # released when the holder finished
        assert mine.pid == os.getpid()


def test_a_dead_holders_lock_is_taken_over(paths: WorkspacePaths) -> None:
    holder = start_holder(paths.root)
    holder.kill()  # kill -9: the lock file still names it
    holder.communicate(timeout=30)
    assert str(holder.pid) in paths.lock.read_text()
    with workspace_lock(paths) as mine:
        assert json.loads(paths.lock.read_text())["pid"] == mine.pid == os.getpid()


def test_the_same_process_cannot_lock_twice(paths: WorkspacePaths) -> None:
    with workspace_lock(paths):
        with pytest.raises(WorkspaceLocked, match="by this process"):
            with workspace_lock(paths):
                pass
