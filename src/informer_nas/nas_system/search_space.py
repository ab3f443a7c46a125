"""Which config keys are tunable, with their kind, range or choices, and log scale.

Planners read this: the LLM gets ``describe_space(space)`` in its prompt, the TPE and
random brains sample from ``space.params``, and ``edit_config`` validates every change with
``space.validate(key, value)``. The forecasting task (``FIXED_KEYS``) is fixed for a
workspace. Ranges suit a CPU search; presets narrow them, and a workspace may narrow them
further with its own ``narrowing`` (``nas init --space FILE``), stored in its state so the
space never changes during a search (``search_space_for``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from informer_nas.errors import ConfigError
from informer_nas.informer.config import InformerConfig
from informer_nas.nas_system.param import Param, Scalar, show_typed, show_value

if TYPE_CHECKING:
    from informer_nas.nas_system.state import AgentState

# The forecasting task and the windows it is scored on: runs that differ in any of them
# cannot be compared (split, freq and the eval cap change the validation windows).
FIXED_KEYS: frozenset[str] = frozenset(
    {"data.pred_len", "data.features", "data.target", "data.path", "data.split", "data.freq",
     "training.max_eval_windows"}
)


_PARAMS: tuple[Param, ...] = (
    Param("model.attn", "categorical", "encoder self-attention: ProbSparse ('prob') or full",
          choices=("prob", "full")),
    Param("model.distil", "bool", "halve the sequence between encoder layers (distilling)"),
    Param("model.revin", "bool", "reversible instance normalisation of each input window"),
    Param("model.decomp", "bool",
          "forecast the window's moving-average trend linearly, Informer the remainder"),
    Param("model.linear_skip", "bool",
          "add a linear forecast of the whole window; Informer learns what it misses"),
    Param("model.e_layers", "int", "number of encoder layers", low=1, high=4),
    Param("model.d_layers", "int", "number of decoder layers", low=1, high=3),
    Param("model.d_model", "categorical", "model width; must be divisible by model.n_heads",
          choices=(16, 32, 64, 128, 256, 512)),
    Param("model.n_heads", "categorical", "attention heads; must divide model.d_model",
          choices=(1, 2, 4, 8)),
    Param("model.d_ff", "categorical", "width of the feed-forward layers",
          choices=(32, 64, 128, 256, 512, 1024, 2048)),
    Param("model.factor", "int", "ProbSparse sampling factor (queries kept ~ factor*ln L)",
          low=1, high=10),
    Param("model.dropout", "float", "dropout probability", low=0.0, high=0.5),
    Param("model.activation", "categorical", "feed-forward activation",
          choices=("gelu", "relu")),
    Param("training.optimizer_class", "categorical", "optimizer",
          choices=("Adam", "AdamW", "SGD", "RMSprop")),
    Param("training.optimizer_params.lr", "float", "learning rate", low=1e-5, high=1e-2,
          log=True),
    Param("training.optimizer_params.weight_decay", "float", "L2 weight decay",
          low=0.0, high=0.1),
    Param("training.scheduler_class", "categorical",
          "learning-rate schedule ('type1' halves it every epoch)",
          choices=("type1", "CosineAnnealingLR", "StepLR", "none")),
    Param("training.criterion_class", "categorical", "training loss (metrics stay MSE/MAE)",
          choices=("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss")),
    Param("training.max_epochs", "int", "maximum training epochs", low=1, high=20),
    Param("training.patience", "int", "early-stopping patience in epochs", low=1, high=10),
    Param("data.batch_size", "categorical", "training batch size",
          choices=(8, 16, 32, 64, 128, 256)),
    Param("data.seq_len", "categorical", "encoder look-back window (time steps)",
          choices=(24, 48, 72, 96, 168, 192, 336)),
    Param("data.label_len", "categorical",
          "decoder start-token length; must be <= data.seq_len",
          choices=(12, 24, 48, 72, 96, 168)),
)

# Narrower ranges so that a preset's search stays within its time budget.
_PRESET_NARROWING: dict[str, dict[str, dict[str, object]]] = {
    "tiny": {
        "model.e_layers": {"high": 2},
        "model.d_layers": {"high": 2},
        "model.d_model": {"choices": (16, 32, 64)},
        "model.d_ff": {"choices": (32, 64, 128, 256)},
        "training.max_epochs": {"high": 4},
        "training.patience": {"high": 3},
        "data.batch_size": {"choices": (16, 32, 64)},
        "data.seq_len": {"choices": (24, 48, 96)},
        "data.label_len": {"choices": (12, 24, 48)},
    },
    "quick": {
        "model.e_layers": {"high": 3},
        "model.d_layers": {"high": 2},
        "model.d_model": {"choices": (16, 32, 64, 128, 256)},
        "model.d_ff": {"choices": (32, 64, 128, 256, 512, 1024)},
        "training.max_epochs": {"high": 8},
        "data.seq_len": {"choices": (48, 72, 96, 168, 192)},
        "data.label_len": {"choices": (24, 48, 72, 96)},
    },
    "paper": {},
}


def config_keys(config: InformerConfig | None = None) -> tuple[str, ...]:
    """Every dotted leaf key of a config, in file order (``model.d_model``, ...)."""
    data = (config or InformerConfig()).to_dict()
    return tuple(_leaf_keys(data, ""))


def _leaf_keys(data: dict[str, object], prefix: str) -> Iterator[str]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


@dataclass(frozen=True)
class SearchSpace:
    """The tunable keys of one workspace, in a stable order."""

    params: tuple[Param, ...]
    preset: str = "paper"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    def __getitem__(self, key: str) -> Param:
        return self._index()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._index()

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, key: object) -> Param:
        """The ``Param`` of a key, or a ``ConfigError`` saying why the key cannot be changed."""
        if not isinstance(key, str):
            raise ConfigError(
                f"key {show_value(key)} must be a string such as \"model.d_model\""
            )
        found = self._index().get(key)
        if found is None:
            raise ConfigError(self._unknown_key_message(key))
        return found

    def validate(self, key: object, value: object) -> Scalar:
        """Check one change; return the normalised value (see ``Param.validate``)."""
        return self.param(key).validate(value)

    def _index(self) -> dict[str, Param]:
        return self._by_name  # type: ignore[attr-defined, no-any-return]

    def _unknown_key_message(self, key: str) -> str:
        shown = show_value(key)
        if key in FIXED_KEYS:
            return (
                f"{key} is part of the forecasting task, fixed for this workspace, and cannot "
                f"be changed; tune another key (e.g. model.d_model) or create a new "
                f"workspace with `nas init` for another task"
            )
        if key in config_keys():
            return (
                f"{key} is a config key but not tunable by the search; change one of: "
                f"{', '.join(self.keys)}"
            )
        suggestion = closest_key(key, self.keys)
        hint = f"did you mean \"{suggestion}\"? " if suggestion else ""
        return f"unknown key {shown}; {hint}tunable keys: {', '.join(self.keys)}"


def closest_key(key: str, keys: tuple[str, ...]) -> str | None:
    """The tunable key closest to a mistyped one (same last part first, then difflib)."""
    probe = key[:200].strip().lower()
    last = probe.rsplit(".", 1)[-1]
    for candidate in keys:
        if candidate.rsplit(".", 1)[-1] == last:
            return candidate
    matches = difflib.get_close_matches(probe, keys, n=1, cutoff=0.5)
    if matches:
        return matches[0]
    by_last = {k.rsplit(".", 1)[-1]: k for k in keys}
    matches = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.6)
    return by_last[matches[0]] if matches else None


DEFAULT_SPACE = SearchSpace(_PARAMS)


def search_space_for(
    preset: str | None = None,
    include: InformerConfig | None = None,
    narrowing: Mapping[str, Mapping[str, object]] | None = None,
) -> SearchSpace:
    """The search space of a preset, narrowed further, widened to hold ``include``'s values.

    Args:
        preset: ``tiny`` / ``quick`` / ``paper`` (None: ``paper``, the full space).
        include: a config (usually the workspace's incumbent) whose tunable values must be
            valid members of the space even if a hand edit put them outside the preset.
        narrowing: a workspace's own ranges (see ``validate_narrowing``); a key it names
            replaces the preset's range for that key, measured against the full space.

    Raises:
        ConfigError: unknown preset, or an invalid narrowing.
    """
    name = preset or "paper"
    if name not in _PRESET_NARROWING:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of {', '.join(_PRESET_NARROWING)}"
        )
    own = validate_narrowing(narrowing or {})
    params = [_narrowed(p, own.get(p.name, _PRESET_NARROWING[name].get(p.name, {})))
              for p in _PARAMS]
    if include is not None:
        flat = flatten(include.to_dict())
        params = [_widened(p, flat[p.name]) for p in params]
    return SearchSpace(tuple(params), preset=name)


def study_space(state: AgentState) -> SearchSpace:
    """The space a workspace's study samples from: its preset under its narrowing.

    Unlike ``Workspace.search_space`` it is never widened to hold a hand-edited incumbent,
    so the samplers see the same space for the workspace's whole life (and in a replay).
    """
    return search_space_for(state.preset, narrowing=state.narrowing)


def _narrowed(param: Param, spec: Mapping[str, object]) -> Param:
    fields = dict(spec)
    if "choices" in fields:
        fields["choices"] = tuple(fields["choices"])  # type: ignore[arg-type]
    return param.narrowed(**fields)


def validate_narrowing(raw: object, source: str = "the search-space narrowing"
                       ) -> dict[str, dict[str, object]]:
    """Check a workspace's own narrowing of the full space; return it normalised.

    ``raw`` maps tunable keys to ``{"low": .., "high": ..}`` (int / float keys) or
    ``{"choices": [..]}`` (categorical and bool keys), each within the full space, e.g.
    ``{"model.d_model": {"choices": [64, 128]}, "model.revin": {"choices": [true]}}``. A
    one-value range pins a key (``{"low": 6, "high": 6}``). Keys not named keep the preset's
    range. The result is JSON-ready (choices as lists, in the full space's order).

    Raises:
        ConfigError: one line naming the key, what is wrong and a valid example.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} must be an object of key -> range, got {show_typed(raw)}; "
                          'e.g. {"model.d_model": {"choices": [64, 128]}}')
    result: dict[str, dict[str, object]] = {}
    for key, spec in raw.items():
        try:
            param = DEFAULT_SPACE.param(key)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        result[key] = _narrowing_of(param, spec, source)
    return result


def read_narrowing_file(path: Path) -> dict[str, dict[str, object]]:
    """A narrowing from a JSON file (``nas init --space FILE``), validated.

    Raises:
        ConfigError: unreadable file, invalid JSON (with its line) or an invalid narrowing.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the search-space file {path}: {exc.strerror}; pass "
                          f"an existing JSON file to --space") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"{path}{where} is not valid JSON; write an object such as "
                          '{"model.d_model": {"choices": [64, 128]}}') from None
    return validate_narrowing(raw, source=str(path))


def _narrowing_of(param: Param, spec: object, source: str) -> dict[str, object]:
    def refuse(problem: str) -> ConfigError:
        example = ({"choices": [param.values[0]]} if param.kind in ("bool", "categorical")
                   else {"low": param.low, "high": param.high})
        return ConfigError(f"{source}: {param.name} {problem}; e.g. "
                           f"{json.dumps({param.name: example})}")

    wanted = {"choices"} if param.kind in ("bool", "categorical") else {"low", "high"}
    if not isinstance(spec, Mapping) or not spec or set(spec) - wanted:
        raise refuse(f"takes {' and '.join(sorted(wanted))}, got {show_value(spec)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list | tuple) or not choices:
            raise refuse(f"choices must be a non-empty list, got {show_value(choices)}")
        for choice in choices:
            if param._problem(choice):
                raise refuse(f"choice {show_value(choice)} is not {param.rule()}")
        kept = tuple(c for c in param.values if any(type(c) is type(x) and c == x
                                                    for x in choices))
        return {"choices": list(kept)}
    low, high = spec.get("low", param.low), spec.get("high", param.high)
    for bound in (low, high):
        if param._problem(bound):
            raise refuse(f"bound {show_value(bound)} is not {param.rule()}")
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low > high:
        raise refuse(f"low {show_value(low)} is above high {show_value(high)}")
    return {"low": low, "high": high}


def _widened(param: Param, value: object) -> Param:
    if param.kind == "bool" and param.choices and value not in param.choices:
        return param.narrowed(choices=())
    if param.kind == "categorical" and value not in param.choices:
        ordered = sorted((*param.choices, value), key=lambda c: (str(type(c)), c))
        return param.narrowed(choices=tuple(ordered))
    if param.kind in ("int", "float") and isinstance(value, int | float):
        assert param.low is not None and param.high is not None
        return param.narrowed(low=min(param.low, value), high=max(param.high, value))
    return param


def flatten(data: dict[str, object], prefix: str = "") -> dict[str, object]:
    """``{"model": {"d_model": 8}}`` -> ``{"model.d_model": 8}``."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe_space(space: SearchSpace) -> str:
    """The space as text for the planner's prompt: one line per key plus the rules."""
    lines = [f"Tunable keys (preset {space.preset}):"]
    for param in space:
        lines.append(f"- {param.name}: {param.rule()} -- {param.description}")
    lines.append(
        "Rules: model.d_model divisible by model.n_heads; data.label_len <= data.seq_len; "
        "with model.distil, data.seq_len >= 2 ** (model.e_layers - 1)."
    )
    lines.append(
        f"Fixed (the forecasting task, never changed): {', '.join(sorted(FIXED_KEYS))}."
    )
    return "\n".join(lines)
