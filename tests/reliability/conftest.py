"""Fixtures of the reliability tests: the ``nas`` fork server with the fake trainer.

The helpers of this folder (``fake_trainer.py``, ``session_forkserver.py``,
``forkserver_client.py``, ``crash_checks.py``, ``crash_harness.py``, ``llm_server.py``)
are imported by their module names: pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from forkserver_client import ForkServer, stop_stragglers


@pytest.fixture(scope="session")
def trainer_pid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where fake trainers record their pids (to stop the ones a kill orphaned)."""
    return tmp_path_factory.mktemp("trainer-pids")


@pytest.fixture(scope="session")
def forkserver(trainer_pid_dir: Path) -> Iterator[ForkServer]:
    """One fork server for the whole folder: ``nas`` commands start in milliseconds.

    Its commands train with ``fake_trainer.py`` (0.1 s per epoch).
    """
    server = ForkServer("fake", env={"FAKE_TRAINER_PID_DIR": str(trainer_pid_dir),
                                     "FAKE_TRAINER_EPOCH_S": "0.1"})
    yield server
    server.close()
    stop_stragglers(trainer_pid_dir)
