"""``InformerConfig``: the sole home of the trainer's defaults and constraints.

A config file holds ``CONFIG = {"model": {...}, "training": {...}, "data": {...}}``. It is
read by literal evaluation (``ast.literal_eval`` of the assigned expression), never
executed or imported, and validated here. The trainer, ``edit_config`` and the search
space all go through this one model.

Defaults are the Informer reference implementation's (AAAI 2021, ETTh1, features M).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from informer_nas.errors import ConfigError

AttentionKind = Literal["prob", "full"]
EmbedKind = Literal["timeF", "fixed", "learned"]
Activation = Literal["gelu", "relu"]
OptimizerName = Literal["Adam", "AdamW", "SGD", "RMSprop"]
SchedulerName = Literal["type1", "CosineAnnealingLR", "StepLR", "none"]
CriterionName = Literal["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"]
Features = Literal["M", "S", "MS"]
Frequency = Literal["h", "t"]
SplitKind = Literal["ett", "ratio"]
DeviceName = Literal["auto", "cpu", "cuda"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Architecture of the Informer network."""

    d_model: int = Field(512, ge=1, le=4096)
    n_heads: int = Field(8, ge=1, le=64)
    e_layers: int = Field(2, ge=1, le=8)
    d_layers: int = Field(1, ge=1, le=8)
    d_ff: int = Field(2048, ge=1, le=16384)
    factor: int = Field(5, ge=1, le=100)
    dropout: float = Field(0.05, ge=0.0, le=0.9)
    attn: AttentionKind = "prob"
    embed: EmbedKind = "timeF"
    activation: Activation = "gelu"
    distil: bool = True
    mix: bool = True
    revin: bool = False
    decomp: bool = False
    moving_avg: int = Field(25, ge=2, le=1024)
    linear_skip: bool = False


class OptimizerParams(_Section):
    """Keyword arguments for the optimizer."""

    lr: float = Field(1e-4, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)


class SchedulerParams(_Section):
    """Settings for StepLR (step_size, gamma); other schedulers ignore them."""

    step_size: int = Field(2, ge=1, le=1000)
    gamma: float = Field(0.5, gt=0.0, le=1.0)


class TrainingSection(_Section):
    """Optimisation, early stopping, device and reproducibility."""

    optimizer_class: OptimizerName = "Adam"
    optimizer_params: OptimizerParams = OptimizerParams()
    scheduler_class: SchedulerName = "type1"
    scheduler_params: SchedulerParams = SchedulerParams()
    criterion_class: CriterionName = "MSELoss"
    max_epochs: int = Field(6, ge=1, le=1000)
    patience: int = Field(3, ge=1, le=1000)
    grad_clip: float | None = Field(None, gt=0.0)
    seed: int = Field(2021, ge=0, le=2**31 - 1)
    device: DeviceName = "auto"
    amp: bool = False
    num_threads: int | None = Field(None, ge=1, le=512)
    # Caps for fast presets and tests: an evenly spaced subset of the windows.
    # None scores every window, as benchmark numbers must.
    max_train_windows: int | None = Field(None, ge=1)
    max_eval_windows: int | None = Field(None, ge=1)


class DataSection(_Section):
    """The forecasting task and the look-back window."""

    path: str | None = None  # None: the bundled ETTh1.csv
    features: Features = "M"
    target: str = Field("OT", min_length=1)
    freq: Frequency = "h"
    split: SplitKind = "ett"
    seq_len: int = Field(96, ge=2, le=5000)
    label_len: int = Field(48, ge=0, le=5000)
    pred_len: int = Field(24, ge=1, le=5000)
    batch_size: int = Field(32, ge=1, le=4096)


class InformerConfig(_Section):
    """A complete, validated training config."""

    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    data: DataSection = DataSection()

    @model_validator(mode="after")
    def _cross_field_rules(self) -> InformerConfig:
        m, d = self.model, self.data
        if m.d_model % m.n_heads:
            heads = min((h for h in range(1, 9) if m.d_model % h == 0),
                        key=lambda h: (abs(h - m.n_heads), -h))
            raise ValueError(
                f"model.d_model ({m.d_model}) must be divisible by model.n_heads "
                f"({m.n_heads}); e.g. n_heads {heads}, a divisor of {m.d_model}"
            )
        if d.label_len > d.seq_len:
            raise ValueError(
                f"data.label_len ({d.label_len}) must be <= data.seq_len ({d.seq_len}); "
                f"e.g. label_len {d.seq_len // 2}"
            )
        if m.distil and d.seq_len < 2 ** (m.e_layers - 1):
            raise ValueError(
                f"data.seq_len ({d.seq_len}) is too short for {m.e_layers} distilled encoder "
                f"layers (each halves it); use seq_len >= {2 ** (m.e_layers - 1)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The plain nested dict written to ``config.py``."""
        return self.model_dump(mode="python")


def validate_config(data: Any, source: str = "config") -> InformerConfig:
    """Validate a nested dict, raising ``ConfigError`` with one line per problem.

    Args:
        data: the ``CONFIG`` mapping.
        source: a name for the message (file path or "candidate").
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: CONFIG must be a dict, got {type(data).__name__}")
    try:
        return InformerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


# What pydantic puts before a validator's own words ("Value error, d_model ...").
_PYDANTIC_PREFIXES = re.compile(r"(^|: )(?:Value error|Assertion failed), ")


def without_pydantic_prefix(message: str) -> str:
    """``message`` without pydantic's "Value error, " / "Assertion failed, " before a
    validator's words, at its start or after a ``": "`` (Typer's "Invalid value for ...: ")."""
    return _PYDANTIC_PREFIXES.sub(r"\1", message)


def format_validation_error(exc: ValidationError) -> str:
    """One readable line: ``key: problem (got value)`` for each error."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "CONFIG"
        msg = without_pydantic_prefix(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check the spelling"
        got = err.get("input")
        hidden = err["type"] == "extra_forbidden" or isinstance(got, dict)
        shown = "" if hidden else f" (got {got!r})"
        parts.append(f"{key}: {msg}{shown}")
    return "; ".join(parts)


def read_config_literal(path: Path) -> dict[str, Any]:
    """Read ``CONFIG`` from a config file by literal evaluation only.

    Raises:
        ConfigError: the file is missing, has a syntax error, has no ``CONFIG``, or
            assigns something that is not a pure literal (naming the line and the
            offending expression).
    """
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; create one with `nas init`") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: byte {exc.start} is not UTF-8 text; save the file as "
                          "UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; name a config file") from None
    return literal_from_source(source, path)


def literal_from_source(source: str, path: Path) -> dict[str, Any]:
    """``CONFIG`` of a config file's text (``path`` names it in errors); as
    ``read_config_literal``."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: syntax error ({exc.msg}); fix the file") from None
    config_node: ast.expr | None = None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "CONFIG"
            and config_node is None
        ):
            config_node = node.value
            continue
        # Only a docstring-like constant may stand beside the assignment.
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            raise ConfigError(
                f"{path}:{node.lineno}: only `CONFIG = {{...}}` and comments are allowed, "
                f"found `{ast.get_source_segment(source, node)}`; remove that line"
            )
    if config_node is not None:
        _refuse_non_literals(config_node, path, source)
        return ast.literal_eval(config_node)  # type: ignore[no-any-return]
    raise ConfigError(f"{path}: no `CONFIG = {{...}}` assignment; recreate it with `nas init`")


_LITERAL_NODES = (ast.Constant, ast.Dict, ast.List, ast.Tuple, ast.Set, ast.Load)


def _refuse_non_literals(node: ast.AST, path: Path, source: str) -> None:
    for child in ast.walk(node):
        if isinstance(child, _LITERAL_NODES):
            continue
        # A signed number is a UnaryOp(USub or UAdd, Constant): a literal too (not -True).
        if isinstance(child, ast.UnaryOp) and isinstance(child.op, ast.USub | ast.UAdd):
            operand = child.operand
            if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
                continue
        if isinstance(child, ast.USub | ast.UAdd):
            continue
        line = getattr(child, "lineno", getattr(node, "lineno", 0))
        segment = ast.get_source_segment(source, child) or type(child).__name__
        raise ConfigError(
            f"{path}:{line}: `{segment}` is not a literal; the config must be pure data "
            f"(numbers, strings, booleans, None, lists and dicts)"
        )


def load_config(path: Path) -> InformerConfig:
    """Read and validate a config file."""
    return validate_config(read_config_literal(path), source=str(path))
