"""The workspace's forecasting task, fixed for its life: the task keys (``FIXED_KEYS``) a
config may not change, and the data file the incumbent was trained on (by its digest)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from informer_nas.errors import ConfigError, DataError
from informer_nas.informer.config import InformerConfig
from informer_nas.nas_system.config_file import check_config_file
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.runs import incumbent as incumbent_record
from informer_nas.nas_system.search_space import FIXED_KEYS, flatten
from informer_nas.nas_system.state import AgentState


def task_changes(config: InformerConfig, reference: InformerConfig) -> list[str]:
    """How ``config`` changes the forecasting task of ``reference`` (``FIXED_KEYS``)."""
    ours, theirs = flatten(config.to_dict()), flatten(reference.to_dict())
    return [f"{key} is {ours.get(key)!r} where this workspace's runs have {theirs.get(key)!r}"
            for key in sorted(FIXED_KEYS) if ours.get(key) != theirs.get(key)]


def workspace_task(paths: WorkspacePaths, state: AgentState) -> InformerConfig | None:
    """The config the workspace's task is read from: the incumbent's ``config_used.py``,
    else the first run's that is readable (None before any run)."""
    ids = [state.incumbent_run_id] if state.incumbent_run_id else []
    for run_id in [*ids, *(run.run_id for run in state.runs)]:
        try:
            return check_config_file(paths.run_dir(run_id) / "config_used.py")
        except ConfigError:
            continue
    return None


def check_task(paths: WorkspacePaths, state: AgentState, config: InformerConfig) -> None:
    """Refuse ``config`` (``config.py``, edited by hand) if it changes the workspace's task.

    Raises:
        ConfigError: which key changed, and what to do.
    """
    reference = workspace_task(paths, state)
    if reference is None:
        return
    changes = task_changes(config, reference)
    if changes:
        raise ConfigError(
            f"{paths.config}: the forecasting task is fixed for a workspace, but {changes[0]}; "
            "put the value back (or run `nas doctor --repair`), or start a new workspace "
            "with `nas init` for the other task")


def check_data(state: AgentState, config: InformerConfig) -> None:
    """Refuse to go on when the data file is not the one the incumbent was trained on (it
    was edited, replaced, deleted, or a relative ``data.path`` now names another file):
    new runs would be compared with scores on other data. Without an incumbent, refuse a
    file the trainer would refuse (a misspelt data.target, too few rows): every training
    would fail on it.

    Raises:
        ConfigError: the file and what to do (``data_problem``).
        DataError: what the trainer would say about the file.
    """
    problem = data_problem(state, config)
    if problem is not None:
        raise ConfigError(f"{problem[0]}; {problem[1]}")
    if incumbent_record(state) is None:  # no run has read the file yet: read it now
        from informer_nas.informer.data import check_data_file

        check_data_file(config.data)


@dataclass(frozen=True)
class DataMismatch:
    """How the data file a config names differs from the one recorded by its digest."""

    path: Path
    relative: bool  # data.path is relative: resolved against the current directory
    kind: Literal["missing", "unreadable", "changed"]
    reason: str = ""  # the read error, for ``unreadable``

    @property
    def where(self) -> str:
        return f" (relative to the current directory, {Path.cwd()})" if self.relative else ""


def data_mismatch(config: InformerConfig, digest: str) -> DataMismatch | None:
    """Whether the data file ``config`` names is not the one with ``digest`` (None: it is)."""
    from informer_nas.informer.data_files import data_file, file_digest

    path = data_file(config.data)
    relative = config.data.path is not None and not path.is_absolute()
    try:
        if file_digest(path) == digest:
            return None
    except DataError as exc:
        if path.exists():  # there, but unreadable
            return DataMismatch(path, relative, "unreadable", str(exc))
        return DataMismatch(path, relative, "missing")
    return DataMismatch(path, relative, "changed")


def data_problem(state: AgentState, config: InformerConfig) -> tuple[str, str] | None:
    """What is wrong with the data file, and what to do (None: it is the incumbent's)."""
    incumbent = incumbent_record(state)
    if incumbent is None or incumbent.data_digest is None:
        return None
    mismatch = data_mismatch(config, incumbent.data_digest)
    if mismatch is None:
        return None
    path, where = mismatch.path, mismatch.where
    back = ("put it back, or run nas from the directory data.path is relative to"
            if mismatch.relative else "put it back")
    if mismatch.kind == "unreadable":
        return mismatch.reason, "fix its permissions, then run the command again"
    if mismatch.kind == "missing":
        return (f"data file {path}{where} is missing; the workspace's runs were trained on it "
                "(data.path is part of the task, fixed for the workspace)", back)
    return (f"data file {path}{where} is not the one the incumbent {incumbent.run_id} was "
            "trained on (its contents changed, or data.path now names another file), so "
            "new runs could not be compared with it",
            f"{back} as it was, or start a new workspace with "
            f"`nas init --data {shlex.quote(str(path.resolve()))}`")
