"""Named starting configs: ``tiny`` (tests), ``quick`` (a CPU demo), ``paper`` (reference).

Each preset is a set of overrides on ``InformerConfig``'s defaults, which are the
reference implementation's (``paper``).
"""

from __future__ import annotations

from typing import Any, Literal

from informer_nas.errors import ConfigError
from informer_nas.informer.config import InformerConfig

PresetName = Literal["tiny", "quick", "paper"]

_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    # Seconds per training: a few hundred windows, a model of a few thousand parameters.
    "tiny": {
        "model": {"d_model": 16, "n_heads": 2, "e_layers": 1, "d_layers": 1, "d_ff": 32,
                  "factor": 3},
        "training": {"max_epochs": 2, "patience": 2, "max_train_windows": 256,
                     "max_eval_windows": 128, "device": "cpu", "num_threads": 1},
        "data": {"seq_len": 48, "label_len": 24, "pred_len": 12, "batch_size": 32},
    },
    # About a minute per training on a 2-core CPU.
    "quick": {
        "model": {"d_model": 64, "n_heads": 4, "e_layers": 2, "d_layers": 1, "d_ff": 256},
        "training": {"max_epochs": 3, "patience": 2, "max_train_windows": 2048,
                     "max_eval_windows": 1024},
        "data": {"seq_len": 96, "label_len": 48, "pred_len": 24, "batch_size": 32},
    },
    "paper": {},
}

PRESETS: tuple[str, ...] = tuple(_OVERRIDES)


def preset_config(name: str) -> InformerConfig:
    """The validated config of a preset.

    Raises:
        ConfigError: unknown preset name.
    """
    if name not in _OVERRIDES:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = InformerConfig().to_dict()
    for section, values in _OVERRIDES[name].items():
        base[section].update(values)
    return InformerConfig.model_validate(base)
