"""Fixtures for the agents tests: a tiny workspace and a stub trainer (no torch, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_fakes import fake_train

from informer_nas.nas_system.executor import CallableExecutor
from informer_nas.nas_system.workspace import Workspace


@pytest.fixture
def stub_executor() -> CallableExecutor:
    return CallableExecutor(fake_train)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws", "tiny")
