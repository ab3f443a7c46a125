"""A workspace's ``config.py``: rendering a config as commented text (``render_config``)
and reading it back by literal evaluation, validated (``check_config_file``)."""

from __future__ import annotations

import ast
from pathlib import Path

from pydantic import ValidationError

from informer_nas.errors import ConfigError
from informer_nas.informer.config import (
    InformerConfig,
    format_validation_error,
    read_config_literal,
    validate_config,
)
from informer_nas.informer.config_source import python_literal
from informer_nas.nas_system.search_space import DEFAULT_SPACE, FIXED_KEYS, SearchSpace

_HEADER = """\
# informer-nas config: the incumbent training config of this workspace.
#
# This file is data, not code. It is read by literal evaluation only (never executed or
# imported), so it may hold only `CONFIG = {...}` with numbers, strings, True / False /
# None and nested dicts. Between iterations it holds the incumbent (the best accepted
# config); during an iteration edit_config edits a copy, candidate.py, keeping comments.
# "tunable" keys give the range the search may use; "fixed" keys define the forecasting
# task and never change in this workspace; the others are settings the search leaves alone.
"""

# What the keys outside the search space mean (the tunable ones carry their own text).
KEY_DOCS: dict[str, str] = {
    "model.embed": "time-feature embedding: 'timeF', 'fixed' or 'learned'",
    "model.mix": "mix the decoder's attention heads (reference: True)",
    "model.moving_avg": "moving-average length of model.decomp's trend",
    "training.optimizer_params.momentum": "SGD momentum in [0, 1)",
    "training.scheduler_params": "StepLR settings; other schedulers ignore them",
    "training.scheduler_params.step_size": "StepLR: epochs between decays",
    "training.scheduler_params.gamma": "StepLR: decay factor in (0, 1]",
    "training.optimizer_params": "keyword arguments of the optimizer",
    "training.grad_clip": "clip the gradient norm to this value (None: off)",
    "training.seed": "training seed; the session sets it per run",
    "training.device": "'auto', 'cpu' or 'cuda'",
    "training.amp": "mixed precision on CUDA",
    "training.num_threads": "torch CPU threads (None: torch's default)",
    "training.max_train_windows": "train on an evenly spaced subset of windows (None: all)",
    "training.max_eval_windows": "score an evenly spaced subset of windows (None: all)",
    "data.path": "CSV file of the series (None: the bundled ETTh1.csv)",
    "data.features": "'M' multivariate to multivariate, 'S' univariate, 'MS' to the target",
    "data.target": "the target column",
    "data.freq": "time-feature frequency: 'h' hourly, 't' minutely",
    "data.split": "'ett' (12/4/4 months) or 'ratio' (70/10/20)",
    "data.pred_len": "forecast horizon (time steps)",
}
SECTION_DOCS: dict[str, str] = {
    "model": "the Informer network",
    "training": "optimisation, early stopping, device and reproducibility",
    "data": "the forecasting task and the look-back window",
}


def key_comment(key: str, space: SearchSpace = DEFAULT_SPACE) -> str:
    """The comment written after ``key`` in ``config.py``."""
    if key in space:
        param = space[key]
        return f"{param.description}; tunable: {param.rule()}"
    doc = KEY_DOCS.get(key, SECTION_DOCS.get(key, ""))
    return f"{doc}; fixed (the task)" if key in FIXED_KEYS else doc


def render_config(
    cfg: InformerConfig, space: SearchSpace = DEFAULT_SPACE, header: str = _HEADER
) -> str:
    """``config.py`` text: a header comment, then one key per line, each commented."""
    lines = [header.rstrip("\n"), "", "CONFIG = {"]
    _render_dict(cfg.to_dict(), "", 1, lines, space)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_dict(
    data: dict[str, object], prefix: str, depth: int, lines: list[str], space: SearchSpace
) -> None:
    indent = "    " * depth
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        comment = key_comment(dotted, space)
        suffix = f"  # {comment}" if comment else ""
        if isinstance(value, dict):
            lines.append(f'{indent}"{key}": {{{suffix}')
            _render_dict(value, f"{dotted}.", depth + 1, lines, space)
            lines.append(f"{indent}}},")
        else:
            lines.append(f'{indent}"{key}": {python_literal(value)},{suffix}')


def check_config_file(path: Path) -> InformerConfig:
    """Read a config file by literal evaluation and validate it; every error names a line.

    Raises:
        ConfigError: ``path:line: reason``: not a pure literal (the offending expression),
            or a schema failure (the line of the first offending key).
    """
    raw = read_config_literal(path)
    if not isinstance(raw, dict):
        return validate_config(raw, str(path))
    try:
        return InformerConfig.model_validate(raw)
    except ValidationError as exc:
        line = _line_of_key(path, exc.errors()[0]["loc"])
        raise ConfigError(f"{path}:{line}: {format_validation_error(exc)}") from None


def _line_of_key(path: Path, loc: tuple[int | str, ...]) -> int:
    """The line of ``CONFIG[loc[0]][loc[1]]...`` (or of its deepest existing section)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node: ast.expr | None = next(
        (s.value for s in tree.body if isinstance(s, ast.Assign)
         and any(isinstance(t, ast.Name) and t.id == "CONFIG" for t in s.targets)), None)
    line = node.lineno if node is not None else 1
    for part in loc:
        if not isinstance(node, ast.Dict):
            break
        keys = [(k, v) for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == part]
        if not keys:
            break
        key, node = keys[-1]  # the last occurrence wins, as in literal evaluation
        line = key.lineno
    return line
