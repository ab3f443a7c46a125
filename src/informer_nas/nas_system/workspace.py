"""The workspace directory: a commented ``config.py``, ``agent_state.json``, runs, traces.

``Workspace.create`` writes a fresh one from a preset; ``Workspace.open`` checks that a
directory is one and that its ``config.py`` is a valid pure literal. The text of
``config.py`` is ``config_file.py``'s; the checks that keep the workspace's task fixed are
``task.py``'s.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from informer_nas.errors import ConfigError, DataError, NasError
from informer_nas.informer.config import (
    InformerConfig,
    format_validation_error,
)
from informer_nas.informer.presets import preset_config
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.config_file import check_config_file, render_config
from informer_nas.nas_system.lock import file_stamp, workspace_lock
from informer_nas.nas_system.param import Param
from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.search_space import (
    SearchSpace,
    flatten,
    search_space_for,
    validate_narrowing,
)
from informer_nas.nas_system.state import AgentState, compact_state, doctor_hint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """One workspace directory (see DESIGN.md).

    ``notes``: for a workspace just created from a CSV, why its data section differs from
    the preset's (``fit_csv``'s lines: the target, the frequency, the split); else empty.
    """

    paths: WorkspacePaths
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def root(self) -> Path:
        return self.paths.root

    @classmethod
    def create(cls, root: Path, preset: str, data_path: Path | None = None, *,
               config: InformerConfig | None = None,
               narrowing: Mapping[str, Mapping[str, object]] | None = None) -> Workspace:
        """Create a workspace: a commented ``config.py`` and a fresh state.

        Args:
            root: the directory (created if missing; it must not hold a workspace).
            preset: ``tiny``, ``quick`` or ``paper``: the starting config and search ranges.
            data_path: a CSV to forecast instead of the bundled ETTh1.csv.
            config: the starting config instead of the preset's (``data_path`` still applies);
                it must lie inside the narrowed space.
            narrowing: the workspace's own search ranges (``validate_narrowing``), kept in
                its state; a preset value outside them moves to the nearest allowed value.

        Raises:
            ConfigError: unknown preset, invalid narrowing, a starting value outside it, or
                ``root`` already holds a workspace.
            DataError: ``data_path`` is not a file.
        """
        paths = WorkspacePaths(Path(root).resolve())
        own = validate_narrowing(narrowing or {})
        space = search_space_for(preset, narrowing=own)
        if config is None:
            config, notes = _initial_config(preset, data_path)
            config = _fitted_into(config, space)
        else:
            config, notes = _initial_config(preset, data_path, config)
            _check_inside(config, space)
        _refuse_existing(paths)
        paths.root.mkdir(parents=True, exist_ok=True)
        # Two `nas init` (or `nas run`) on one new directory: one creates, the other is
        # refused; unlocked, each could write half of a workspace (config.py of one preset,
        # the state of the other).
        with workspace_lock(paths):
            unfinished = _refuse_existing(paths)
            paths.runs.mkdir(exist_ok=True)
            paths.traces.mkdir(exist_ok=True)
            text = render_config(config, space)
            note = _set_aside_unfinished(paths, text) if unfinished else None
            atomic_write_text(paths.config, text)
            compact_state(paths, AgentState(preset=preset, narrowing=own))  # the commit point
        return cls(paths, tuple(notes) + ((note,) if note else ()))

    @classmethod
    def open(cls, root: Path, validate: bool = True) -> Workspace:
        """Open an existing workspace.

        Args:
            root: the workspace directory.
            validate: also check that ``config.py`` is a valid pure literal.

        Raises:
            NasError: not a workspace (names the path and ``nas init``).
            ConfigError: ``config.py`` is not a pure literal or fails the schema.
        """
        paths = WorkspacePaths(Path(root).resolve())
        for needed in (paths.config, paths.state):
            if not needed.is_file():
                raise NasError(_missing_message(paths, needed, root))
        paths.runs.mkdir(exist_ok=True)
        paths.traces.mkdir(exist_ok=True)
        if validate:
            try:
                check_config_file(paths.config)
            except ConfigError as exc:
                raise ConfigError(f"{exc}; no training was started{_restore_hint(paths)}"
                                  ) from None
        return cls(paths)

    def config(self) -> InformerConfig:
        """The incumbent config (``config.py``), validated."""
        return check_config_file(self.paths.config)

    def search_space(self, state: AgentState) -> SearchSpace:
        """The state's space (preset and narrowing), widened to hold the incumbent's values."""
        return search_space_for(state.preset, include=self.config(),
                                narrowing=state.narrowing)




def _restore_hint(paths: WorkspacePaths) -> str:
    """How else a broken config.py can be mended: from the incumbent's config, when there
    is one (doctor has nothing to restore before the first accepted run)."""
    from informer_nas.nas_system.state import load_state

    try:
        has_incumbent = load_state(paths).incumbent_run_id is not None
    except NasError:
        has_incumbent = False
    if not has_incumbent:
        return " (fix it by hand: there is no accepted run yet to restore it from)"
    return (f" (`nas doctor --workspace {shlex.quote(str(paths.root))} --repair` puts the "
            "incumbent run's config back instead)")


def unfinished_creation(paths: WorkspacePaths) -> bool:
    """True where a command creating the workspace was stopped between writing
    ``config.py`` and the state (its commit point): no state, no journal, no run, no trace.
    Creating the workspace again is then safe; opening it is not possible."""
    from informer_nas.nas_system.state import journal_path

    return (paths.config.is_file() and not paths.state.exists()
            and not journal_path(paths).exists()
            and _is_empty(paths.runs) and _is_empty(paths.traces))


def _is_empty(directory: Path) -> bool:
    """No entry in ``directory`` (True when it is missing; False when it is a file)."""
    try:
        return next(directory.iterdir(), None) is None
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _set_aside_unfinished(paths: WorkspacePaths, config_text: str) -> str:
    """Before a creation overwrites an unfinished one's ``config.py``: keep that file as
    ``config.py.unfinished-<UTC time>`` when it differs (edited since, or another
    preset's); the note."""
    if paths.config.read_text(encoding="utf-8", errors="replace") == config_text:
        return "finished creating the workspace a stopped command had begun"
    kept = paths.config.with_name(f"{paths.config.name}.unfinished-{file_stamp()}")
    paths.config.replace(kept)
    return (f"finished creating the workspace a stopped command had begun; its config.py "
            f"differed from this one (edited since, or another preset's) and is kept as "
            f"{kept.name}")


def _refuse_existing(paths: WorkspacePaths) -> bool:
    """Refuse a directory that holds a workspace; True where it holds an unfinished one
    (``unfinished_creation``), which a creation may replace."""
    if unfinished_creation(paths):
        return True
    for existing in (paths.config, paths.state):
        if existing.exists():
            raise ConfigError(
                f"{paths.root} already holds a workspace ({existing.name} exists); it was "
                f"not touched; continue it with `nas resume` or pick another directory"
            )
    return False




def _missing_message(paths: WorkspacePaths, missing: Path, root: Path) -> str:
    """Not a workspace, or one that lost a file (then `nas doctor` can rebuild it)."""
    if not paths.root.exists():
        return (f"{paths.root} does not exist; check the path, or create a workspace there "
                f"with `nas init --workspace {shlex.quote(str(root))}`")
    if unfinished_creation(paths):
        return (f"{paths.root} is not an informer-nas workspace yet: the command creating it "
                f"was stopped before it finished; run `nas init` or `nas run` on it again")
    others = (paths.config, paths.state, paths.runs)
    if any(path.exists() for path in others if path != missing):
        return (f"{paths.root} is a damaged informer-nas workspace ({missing.name} is "
                f"missing); {doctor_hint(paths)}")
    return (f"{paths.root} is not an informer-nas workspace ({missing.name} is missing); "
            f"create one with `nas init --workspace {shlex.quote(str(root))}`")


def _fitted_into(config: InformerConfig, space: SearchSpace) -> InformerConfig:
    """``config`` with each tunable value outside ``space`` moved to the nearest allowed one;
    where two moved values break a rule between them, the other key moves too, when the
    narrowing allows it (label_len 168 asks for a look-back of at least 168).

    Raises:
        ConfigError: the moved values break a constraint (e.g. d_model and n_heads).
    """
    data = config.to_dict()
    for param in space:
        *parents, leaf = param.name.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = _nearest(param, node[leaf])
    section = data["data"]
    if section["label_len"] > section["seq_len"] and "data.seq_len" in space:
        section["seq_len"] = _smallest_allowed(space["data.seq_len"], section["label_len"])
    try:
        return InformerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"the preset's config moved into the search-space narrowing is "
                          f"invalid: {format_validation_error(exc)}; adjust the narrowing"
                          ) from None


def _nearest(param: Param, value: Any) -> Any:
    """``value`` if ``param`` allows it, else the closest allowed value."""
    try:
        return param.validate(value)
    except ConfigError:
        pass
    if param.kind in ("int", "float"):
        assert param.low is not None and param.high is not None
        clamped = min(max(value, param.low), param.high)
        return int(clamped) if param.kind == "int" else float(clamped)
    numeric = isinstance(value, int | float) and not isinstance(value, bool) and all(
        isinstance(c, int | float) and not isinstance(c, bool) for c in param.values)
    if numeric:
        return min(param.values, key=lambda c: abs(float(c) - value))
    return param.values[0]


def _smallest_allowed(param: Param, at_least: int) -> Any:
    """The smallest value ``param`` allows that is at least ``at_least``, or ``at_least``
    itself when none is (the validation then says why)."""
    if param.kind == "int":
        assert param.low is not None and param.high is not None
        value = max(int(param.low), at_least)
        return value if value <= param.high else at_least
    allowed = sorted(v for v in param.values if isinstance(v, int) and v >= at_least)
    return allowed[0] if allowed else at_least


def _check_inside(config: InformerConfig, space: SearchSpace) -> None:
    """Refuse a starting config with a tunable value outside the workspace's space."""
    flat = flatten(config.to_dict())
    for param in space:
        try:
            param.validate(flat[param.name])
        except ConfigError as exc:
            raise ConfigError(f"the starting config is outside the search space: {exc}; "
                              f"widen the narrowing or change the starting value") from None


def _initial_config(preset: str, data_path: Path | None, config: InformerConfig | None = None
                    ) -> tuple[InformerConfig, list[str]]:
    """The starting config, fitted to ``data_path`` when given, and why it was changed."""
    config = config or preset_config(preset)
    if data_path is None:
        return config, []
    from informer_nas.informer.data import fit_csv

    path = Path(data_path).expanduser().resolve()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"data file {data_path} {what}; pass an existing CSV to --data")
    data = config.to_dict()
    data["data"]["path"] = str(path)
    changes, notes = fit_csv(InformerConfig.model_validate(data).data)
    data["data"].update(changes)
    for note in notes:
        logger.info("%s: %s", path.name, note)
    return InformerConfig.model_validate(data), notes
