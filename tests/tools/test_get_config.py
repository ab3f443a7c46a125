"""get_config: the incumbent, or the candidate while an iteration has edits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from informer_nas.errors import ConfigError
from informer_nas.informer.presets import preset_config
from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.records import ConfigChange
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.edit_config import edit_config
from informer_nas.tools.get_config import get_config


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workspace = Workspace.create(tmp_path, "tiny")
    executor = CallableExecutor(lambda request: pytest.fail("no training here"))
    return ToolContext(workspace, load_state(workspace.paths), SessionSettings(), executor)


def test_the_incumbent_before_any_edit(ctx: ToolContext) -> None:
    text = get_config(ctx)
    assert " " not in text.split('"config"')[0]  # compact
    payload = json.loads(text)
    assert payload["source"] == "incumbent" and payload["changes"] == []
    assert payload["config"] == preset_config("tiny").to_dict()


def test_the_candidate_once_edited(ctx: ToolContext) -> None:
    edit_config(ctx, [ConfigChange(key="model.d_model", value=32)], "wider")
    payload = json.loads(get_config(ctx))
    assert payload["source"] == "candidate"
    assert payload["changes"] == [{"key": "model.d_model", "value": 32}]
    assert payload["config"]["model"]["d_model"] == 32


def test_a_config_that_is_not_a_literal_is_refused_with_its_line(ctx: ToolContext) -> None:
    path = ctx.workspace.paths.config
    path.write_text("import os\nos.system('true')\n" + path.read_text())
    with pytest.raises(ConfigError, match=r"config.py:\d+: only `CONFIG = \{...\}`"):
        get_config(ctx)


def test_a_config_that_fails_the_schema_is_refused(ctx: ToolContext) -> None:
    path = ctx.workspace.paths.config
    path.write_text(path.read_text().replace('"n_heads": 2,', '"n_heads": 3,'))
    with pytest.raises(ConfigError, match="must be divisible by model.n_heads"):
        get_config(ctx)
