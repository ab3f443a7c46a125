"""The ``edit_config`` tool: validated ``{key, value}`` changes applied to the candidate.

The candidate (``candidate.py``) is always ``config.py`` (the incumbent) with this
iteration's changes applied by a syntax-tree edit (libcst), so comments and layout stay.
Every value is checked against the search space and the whole result against
``InformerConfig`` before anything is written; a refused edit leaves the file
byte-identical. Nothing from a change is ever executed: value nodes are built from Python
values by a formatter, and the written file is re-read by literal evaluation and compared
with the intended config before it replaces the old one.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from informer_nas.errors import ConfigError
from informer_nas.informer.config import (
    format_validation_error,
    read_config_literal,
    validate_config,
)
from informer_nas.informer.config_source import set_values
from informer_nas.nas_system.atomic import atomic_write_text
from informer_nas.nas_system.config_file import key_comment
from informer_nas.nas_system.param import show_value
from informer_nas.nas_system.records import CONFIG_VALUE_ERROR, ConfigChange
from informer_nas.nas_system.search_space import SearchSpace, flatten, search_space_for
from informer_nas.nas_system.state import IterationScratch

if TYPE_CHECKING:
    from informer_nas.tools.context import ToolContext

MAX_CHANGES = 32
MAX_RATIONALE = 2000


def edit_config(ctx: ToolContext, changes: Sequence[ConfigChange], rationale: str) -> str:
    """Change the candidate config for this iteration's training; returns a unified diff.

    Each change is ``{"key": "model.d_model", "value": 64}``: a tunable dotted key and a
    plain value (number, string or boolean) inside the key's range or choices. The whole
    config must stay valid (e.g. model.d_model divisible by model.n_heads). Edits
    accumulate over the iteration on top of the incumbent; a refused edit changes nothing
    and the message says what to fix. Not allowed after launch_training this iteration.

    Args:
        ctx: the tool context.
        changes: the ``{key, value}`` changes to apply, in order.
        rationale: why (recorded with the run).

    Raises:
        ConfigError: a bad key, value or combination, or the candidate was launched.
    """
    current = ctx.state.current
    if current is not None and current.launched_run_id is not None:
        raise ConfigError(
            f"the candidate has already been launched this iteration (run "
            f"{current.launched_run_id}); no more edits until the next iteration, which "
            f"starts again from the incumbent"
        )
    paths = ctx.workspace.paths
    base_text = paths.config.read_text(encoding="utf-8")
    base = read_config_literal(paths.config)
    space = search_space_for(ctx.state.preset, include=validate_config(base, str(paths.config)),
                             narrowing=ctx.state.narrowing)
    requested = validate_changes(changes, space)
    recorded = merge_changes(current.changes if current else [], requested, base)
    intended = apply_to_dict(base, recorded)
    _check_whole_config(intended, requested)
    candidate_text = apply_changes(base_text, recorded)
    before = _candidate_before(paths.candidate, current, base_text)
    atomic_write_text(paths.candidate, candidate_text,
                      verify=lambda temp: verify_written(temp, intended))
    ctx.state.current = IterationScratch(
        iteration=current.iteration if current else ctx.state.iteration + 1,
        changes=recorded,
        rationale=_joined_rationale(current.rationale if current else "", rationale),
    )
    ctx.save()
    return unified_diff(before, candidate_text) or (
        "no change: the candidate already holds these values"
    )


def validate_changes(changes: object, space: SearchSpace) -> list[ConfigChange]:
    """Check each change's key and value; return them with normalised values.

    Raises:
        ConfigError: the first bad change, naming the key, the value, the rule and an example.
    """
    if isinstance(changes, str | bytes | Mapping) or not isinstance(changes, Sequence):
        raise ConfigError(
            f"changes must be a list of {{\"key\", \"value\"}} objects, got "
            f"{show_value(changes)}; e.g. [{{\"key\": \"model.d_model\", \"value\": 64}}]"
        )
    if not changes:
        raise ConfigError(
            "no changes given; pass at least one {key, value} change, e.g. [{\"key\": "
            "\"model.dropout\", \"value\": 0.1}] (to train the config as it is, call "
            "launch_training without an edit)"
        )
    if len(changes) > MAX_CHANGES:
        raise ConfigError(f"{len(changes)} changes in one edit; send at most {MAX_CHANGES}")
    result: list[ConfigChange] = []
    for number, raw in enumerate(changes, start=1):
        change = _as_change(raw, number, space)
        if any(done.key == change.key for done in result):
            raise ConfigError(
                f"key {change.key} appears twice in one edit; send each key once"
            )
        result.append(ConfigChange.model_construct(
            key=change.key, value=space.validate(change.key, change.value)
        ))
    return result


def _as_change(raw: object, number: int, space: SearchSpace) -> ConfigChange:
    if isinstance(raw, ConfigChange):
        return raw
    if isinstance(raw, Mapping):
        try:
            return ConfigChange.model_validate(dict(raw))
        except ValidationError as exc:
            if [error["type"] for error in exc.errors()] == [CONFIG_VALUE_ERROR]:
                # a list or a dict as the value: the key's own rule says what it takes
                space.validate(raw["key"], raw["value"])
            detail = format_validation_error(exc)
    else:
        detail = f"got {show_value(raw)}"
    raise ConfigError(
        f"change {number} must be {{\"key\": <dotted key>, \"value\": <number, string or "
        f"boolean>}} ({show_value(detail, 200)}); e.g. {{\"key\": \"model.dropout\", "
        f"\"value\": 0.1}}"
    )


def merge_changes(
    previous: Sequence[ConfigChange], requested: Sequence[ConfigChange], base: dict[str, Any]
) -> list[ConfigChange]:
    """This iteration's changes so far plus the new ones: one per key, latest value wins,
    and a change back to the incumbent's own value dropped."""
    merged = {change.key: change for change in previous}
    for change in requested:
        merged.pop(change.key, None)
        merged[change.key] = change
    flat = flatten(base)
    return [c for c in merged.values() if not _same_value(flat.get(c.key, _MISSING), c.value)]


_MISSING = object()


def _same_value(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def apply_to_dict(base: dict[str, Any], changes: Sequence[ConfigChange]) -> dict[str, Any]:
    """A deep copy of ``base`` with each dotted key set (missing sections created)."""
    result = copy.deepcopy(base)
    for change in changes:
        *sections, leaf = change.key.split(".")
        node = result
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = change.value
    return result


def _check_whole_config(intended: dict[str, Any], requested: Sequence[ConfigChange]) -> None:
    try:
        validate_config(intended, source="candidate")
    except ConfigError as exc:
        shown = ", ".join(f"{c.key}={show_value(c.value)}" for c in requested)
        reason = str(exc).removeprefix("candidate: ").removeprefix("CONFIG: ")
        raise ConfigError(
            f"edit [{shown}] refused, the resulting config breaks a rule: {reason}; "
            f"the candidate is unchanged"
        ) from None


def apply_changes(source: str, changes: Sequence[ConfigChange]) -> str:
    """Apply ``changes`` to config source text with libcst (pure; comments and layout kept).

    Values must already be validated; a missing key is inserted into its section, with the
    key's comment.

    Raises:
        ConfigError: the source has no ``CONFIG = {...}`` or cannot be parsed.
    """
    return set_values(source, [(change.key, change.value) for change in changes], key_comment)


def verify_written(path: Path, intended: dict[str, Any]) -> None:
    """Check that ``path`` reads back (literally) as exactly ``intended``.

    Raises:
        ConfigError: it does not (a bug or a file layout the editor cannot handle).
    """
    written = read_config_literal(path)
    if not _strict_equal(written, intended):
        raise ConfigError(
            "the edited candidate does not read back as intended (is a key repeated in "
            "config.py?); the candidate is unchanged; check config.py"
        )


def _strict_equal(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _candidate_before(candidate: Path, current: IterationScratch | None, base: str) -> str:
    if current is not None and current.changes and candidate.is_file():
        return candidate.read_text(encoding="utf-8")
    return base


def _joined_rationale(previous: str, rationale: object) -> str:
    text = rationale if isinstance(rationale, str) else str(rationale)
    joined = f"{previous} | {text}" if previous and text and text != previous else (
        text or previous
    )
    return joined[-MAX_RATIONALE:]


def unified_diff(before: str, after: str, name: str = "candidate.py") -> str:
    """A unified diff with one line of context (compact for the planner)."""
    return "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"{name} (before)", tofile=name, n=1,
    ))
