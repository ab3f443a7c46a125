"""A workspace's own search-space narrowing: validated, stored, and obeyed by every tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import ConfigError
from informer_nas.informer.presets import preset_config
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.records import ConfigChange
from informer_nas.nas_system.search_space import (
    read_narrowing_file,
    search_space_for,
    validate_narrowing,
)
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state, save_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.edit_config import edit_config

NARROWING: dict[str, dict[str, Any]] = {
    "model.d_model": {"choices": [64, 32]},
    "model.revin": {"choices": [True]},
    "training.max_epochs": {"low": 2, "high": 2},
    "model.dropout": {"low": 0.0, "high": 0.05},
}


def test_a_narrowing_replaces_the_presets_ranges_key_by_key() -> None:
    space = search_space_for("tiny", narrowing=NARROWING)
    assert space["model.d_model"].choices == (32, 64)  # the full space's order
    assert space["model.revin"].values == (True,)
    assert (space["training.max_epochs"].low, space["training.max_epochs"].high) == (2, 2)
    assert space["data.seq_len"] == search_space_for("tiny")["data.seq_len"]  # not named
    with pytest.raises(ConfigError, match="model.revin = False refused: must be true"):
        space.validate("model.revin", False)
    assert space.validate("model.revin", True) is True


@pytest.mark.parametrize(("raw", "phrase"), [
    ([1, 2], "must be an object of key -> range"),
    ({"model.dmodel": {"choices": [64]}}, 'did you mean "model.d_model"'),
    ({"data.pred_len": {"choices": [24]}}, "fixed for this workspace"),
    ({"model.d_model": {"choices": [64, 300]}}, "choice 300 is not one of 16, 32"),
    ({"model.d_model": {"choices": []}}, "choices must be a non-empty list"),
    ({"model.d_model": {"low": 16}}, "takes choices"),
    ({"model.e_layers": {"low": 3, "high": 2}}, "low 3 is above high 2"),
    ({"model.e_layers": {"low": 0}}, "bound 0 is not an integer in [1, 4]"),
    ({"model.e_layers": {"low": "1"}}, "bound '1' is not"),
    ({"model.e_layers": {"low": 1, "step": 2}}, "takes high and low"),
    ({"model.revin": {"choices": [1]}}, "choice 1 is not false or true"),
    ({"model.revin": True}, "takes choices, got True"),
])
def test_an_invalid_narrowing_is_refused_in_one_line(raw: Any, phrase: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_narrowing(raw, source="space.json")
    message = str(caught.value)
    assert phrase in message and "\n" not in message
    if isinstance(raw, dict):
        assert message.startswith("space.json: ")


def test_a_narrowing_file_with_broken_json_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "space.json"
    bad.write_text('{\n "model.d_model": {"choices": [64,]}\n}')
    with pytest.raises(ConfigError, match="at line 2 is not valid JSON"):
        read_narrowing_file(bad)
    with pytest.raises(ConfigError, match="pass an existing JSON file to --space"):
        read_narrowing_file(tmp_path / "missing.json")
    bad.write_text(json.dumps(NARROWING))
    assert read_narrowing_file(bad)["model.d_model"] == {"choices": [32, 64]}


def test_the_narrowing_is_stored_and_survives_saves_and_reloads(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws", "tiny", narrowing=NARROWING)
    state = load_state(workspace.paths)
    assert state.narrowing == validate_narrowing(NARROWING)
    state.iteration = 3
    save_state(workspace.paths, state)  # a journal line
    reloaded = load_state(workspace.paths)
    assert reloaded.narrowing == state.narrowing and reloaded.iteration == 3
    space = workspace.search_space(reloaded)
    assert space["model.d_model"].choices == (32, 64)


def test_preset_values_outside_the_narrowing_move_to_the_nearest_allowed(
        tmp_path: Path) -> None:
    start = preset_config("tiny")
    assert start.model.d_model == 16 and start.model.revin is False
    config = Workspace.create(tmp_path / "ws", "tiny", narrowing=NARROWING).config()
    assert config.model.d_model == 32 and config.model.revin is True
    assert config.training.max_epochs == 2
    assert config.model.n_heads == start.model.n_heads  # not named: untouched


@pytest.mark.parametrize(("preset", "narrowing", "expected"), [
    # a label part longer than the preset's look-back: the look-back grows to hold it
    ("quick", {"data.label_len": {"choices": [168]}}, {"seq_len": 168, "label_len": 168}),
    ("tiny", {"data.seq_len": {"choices": [24, 96]}, "data.label_len": {"choices": [48]}},
     {"seq_len": 96, "label_len": 48}),
])
def test_a_narrowing_that_a_valid_config_satisfies_is_not_refused(
        tmp_path: Path, preset: str, narrowing: Any, expected: dict[str, int]) -> None:
    """It was: "label_len (168) must be <= seq_len (96) ... adjust the narrowing"."""
    config = Workspace.create(tmp_path / "ws", preset, narrowing=narrowing).config()
    assert {"seq_len": config.data.seq_len, "label_len": config.data.label_len} == expected


def test_an_explicit_starting_config_outside_the_narrowing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="starting config is outside the search space: "
                                          "model.revin = False refused"):
        Workspace.create(tmp_path / "ws", "tiny", config=preset_config("tiny"),
                         narrowing=NARROWING)
    assert not (tmp_path / "ws").exists()


def test_edit_config_refuses_a_value_outside_the_narrowing(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws", "tiny", narrowing=NARROWING)
    executor = CallableExecutor(lambda request: pytest.fail("no training here"))
    ctx = ToolContext(workspace, load_state(workspace.paths), SessionSettings(), executor)
    with pytest.raises(ConfigError, match="model.d_model = 128 refused: must be one of 32, 64"):
        edit_config(ctx, [ConfigChange(key="model.d_model", value=128)], "wider")
    assert not workspace.paths.candidate.exists()
    edit_config(ctx, [ConfigChange(key="model.d_model", value=64)], "wider")
    assert '"d_model": 64' in workspace.paths.candidate.read_text()
