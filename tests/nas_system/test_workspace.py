"""Workspaces: creation from a preset, the commented config.py, opening and refusals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from informer_nas.errors import ConfigError, DataError, NasError
from informer_nas.informer.config import InformerConfig, load_config, read_config_literal
from informer_nas.informer.config_source import python_literal
from informer_nas.informer.presets import PRESETS, preset_config
from informer_nas.nas_system.config_file import render_config
from informer_nas.nas_system.state import journal_path, load_state
from informer_nas.nas_system.workspace import Workspace


@pytest.mark.parametrize("preset", PRESETS)
def test_create_writes_the_preset_as_a_commented_config(tmp_path: Path, preset: str) -> None:
    workspace = Workspace.create(tmp_path / "ws", preset)
    assert load_config(workspace.paths.config) == preset_config(preset)
    text = workspace.paths.config.read_text()
    assert text.startswith("# informer-nas config")
    value_lines = [line for line in text.splitlines() if line.startswith("        \"")]
    assert value_lines and all("  # " in line for line in value_lines)  # every key explained
    assert '"d_model": ' in text and "tunable: one of" in text and "fixed (the task)" in text
    state = load_state(workspace.paths)
    assert (state.preset, state.iteration, state.runs) == (preset, 0, [])
    assert workspace.paths.runs.is_dir() and workspace.paths.traces.is_dir()


def test_the_layout_is_one_key_per_line_in_file_order(tmp_path: Path) -> None:
    text = render_config(preset_config("tiny"))
    lines = text.splitlines()
    start = lines.index("CONFIG = {")
    assert lines[start + 1].startswith('    "model": {')
    assert lines[start + 2].startswith('        "d_model": 16,  # ')
    assert lines[-1] == "}"


def test_numbers_are_written_readably_and_ints_stay_ints() -> None:
    assert python_literal(5e-05) == "5e-05"
    assert python_literal(0.0001) == "0.0001"
    assert python_literal(32) == "32"
    assert python_literal(2.0) == "2.0"
    assert python_literal('say "hi"\n') == '"say \\"hi\\"\\n"'
    data = preset_config("tiny").to_dict()
    data["training"]["optimizer_params"]["lr"] = 5e-05
    text = render_config(InformerConfig.model_validate(data))
    assert '"lr": 5e-05,' in text
    assert ast.literal_eval(text.split("\nCONFIG = ", 1)[1]) == data


def test_create_refuses_to_overwrite_a_workspace(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path, "tiny")
    before = workspace.paths.config.read_bytes(), workspace.paths.state.read_bytes()
    with pytest.raises(ConfigError, match="already holds a workspace.*nas resume"):
        Workspace.create(tmp_path, "quick")
    assert (workspace.paths.config.read_bytes(), workspace.paths.state.read_bytes()) == before


def _stopped_before_its_state(root: Path, preset: str) -> Workspace:
    """A creation killed between config.py and the state (the state is its commit point)."""
    workspace = Workspace.create(root, preset)
    workspace.paths.state.unlink()
    journal_path(workspace.paths).unlink(missing_ok=True)
    return workspace


def test_a_creation_stopped_before_its_state_is_made_again(tmp_path: Path) -> None:
    stopped = _stopped_before_its_state(tmp_path / "ws", "tiny")
    with pytest.raises(NasError, match="not an informer-nas workspace yet.*run `nas init` or "
                                       "`nas run` on it again"):
        Workspace.open(tmp_path / "ws")
    workspace = Workspace.create(tmp_path / "ws", "tiny")  # not refused as "already holds"
    assert load_config(workspace.paths.config) == preset_config("tiny")
    assert load_state(workspace.paths).preset == "tiny"
    assert list(stopped.paths.root.glob("config.py.*")) == []  # nothing worth keeping


def test_a_stopped_creation_keeps_a_config_edited_since(tmp_path: Path) -> None:
    stopped = _stopped_before_its_state(tmp_path / "ws", "tiny")
    edited = "# my edit\n" + stopped.paths.config.read_text()
    stopped.paths.config.write_text(edited)
    workspace = Workspace.create(tmp_path / "ws", "tiny")
    [kept] = workspace.paths.root.glob("config.py.unfinished-*")
    assert kept.read_text() == edited
    assert any(kept.name in note for note in workspace.notes)
    assert load_config(workspace.paths.config) == preset_config("tiny")


def test_a_workspace_with_runs_but_no_state_is_damaged_not_unfinished(tmp_path: Path) -> None:
    stopped = _stopped_before_its_state(tmp_path / "ws", "tiny")
    (stopped.paths.runs / "run_0000").mkdir()
    with pytest.raises(ConfigError, match="already holds a workspace"):
        Workspace.create(tmp_path / "ws", "tiny")
    with pytest.raises(NasError, match="damaged.*nas doctor"):
        Workspace.open(tmp_path / "ws")


def test_create_with_a_data_file(tmp_path: Path) -> None:
    from informer_nas.informer.data_files import bundled_csv_path

    csv = tmp_path / "series.csv"
    csv.write_bytes(bundled_csv_path().read_bytes())
    workspace = Workspace.create(tmp_path / "ws", "tiny", data_path=csv)
    assert read_config_literal(workspace.paths.config)["data"]["path"] == str(csv.resolve())
    csv.write_text("date,OT\n")  # a header and no rows: refused before anything is written
    with pytest.raises(DataError, match="fewer than seq_len"):
        Workspace.create(tmp_path / "empty", "tiny", data_path=csv)
    assert not (tmp_path / "empty").exists()
    with pytest.raises(DataError, match="missing.csv not found"):
        Workspace.create(tmp_path / "other", "tiny", data_path=tmp_path / "missing.csv")
    (tmp_path / "folder").mkdir()  # it said "not found" of a directory that exists
    with pytest.raises(DataError, match="folder is a directory, not a file"):
        Workspace.create(tmp_path / "other", "tiny", data_path=tmp_path / "folder")


def test_unknown_preset_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        Workspace.create(tmp_path / "ws", "huge")
    assert not (tmp_path / "ws").exists()


def test_open_a_workspace(tmp_path: Path) -> None:
    created = Workspace.create(tmp_path, "tiny")
    assert Workspace.open(tmp_path) == created
    assert Workspace.open(tmp_path).config() == preset_config("tiny")


def test_open_refuses_a_directory_that_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(NasError, match=rf"{tmp_path} is not an informer-nas workspace.*nas init"):
        Workspace.open(tmp_path)


def test_open_refuses_a_hand_edited_config_that_is_not_a_literal(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path, "tiny")
    text = workspace.paths.config.read_text().replace(
        '"d_model": 16,', '"d_model": __import__("os").getpid(),'
    )
    workspace.paths.config.write_text(text)
    with pytest.raises(ConfigError, match=r"config.py:\d+: `__import__\(.os.\).getpid\(\)` is not"):
        Workspace.open(tmp_path)
    Workspace.open(tmp_path, validate=False)  # `nas doctor` can still look at it


def test_create_while_another_process_creates_writes_nothing(tmp_path: Path) -> None:
    """Two `nas init` on one new directory: the one that finds the lock taken is refused
    before it writes (both used to succeed, leaving one's config.py with the other's state)."""
    from informer_nas.errors import WorkspaceLocked
    from informer_nas.nas_system.lock import workspace_lock
    from informer_nas.nas_system.paths import WorkspacePaths

    root = tmp_path / "new"
    root.mkdir()
    paths = WorkspacePaths(root.resolve())
    with workspace_lock(paths), pytest.raises(WorkspaceLocked):
        Workspace.create(root, "quick")
    assert not paths.config.exists() and not paths.state.exists()
    Workspace.create(root, "tiny")  # once the other has finished
    assert Workspace.open(root).config().data.seq_len == 48


def test_a_lock_that_is_a_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    """It printed "error: Is a directory" with no path, and doctor could not say more."""
    from informer_nas.errors import NasError
    from informer_nas.nas_system.lock import lock_status, workspace_lock

    paths = Workspace.create(tmp_path / "ws", "tiny").paths
    paths.lock.unlink()  # left empty by the creation
    paths.lock.mkdir()
    for take in (lambda: lock_status(paths), lambda: workspace_lock(paths).__enter__()):
        with pytest.raises(NasError, match=r"\.nas\.lock is a directory.*mv .*\.nas\.lock .*bak"):
            take()
