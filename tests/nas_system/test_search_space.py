"""The search space: kinds, ranges, messages, presets, and the prompt text."""

from __future__ import annotations

import math

import pytest

from informer_nas.errors import ConfigError
from informer_nas.informer.config import InformerConfig
from informer_nas.informer.presets import PRESETS, preset_config
from informer_nas.nas_system.param import MAX_STRING_LENGTH
from informer_nas.nas_system.search_space import (
    DEFAULT_SPACE,
    FIXED_KEYS,
    config_keys,
    describe_space,
    flatten,
    search_space_for,
)

# the issues' keys, and model.decomp and model.linear_skip (linear heads, added for issue 7's
# goal)
ISSUE_KEYS = (
    "model.attn model.distil model.revin model.decomp model.linear_skip model.e_layers "
    "model.d_layers model.d_model "
    "model.n_heads model.d_ff model.factor model.dropout model.activation "
    "training.optimizer_class training.optimizer_params.lr "
    "training.optimizer_params.weight_decay training.scheduler_class "
    "training.criterion_class training.max_epochs training.patience data.batch_size "
    "data.seq_len data.label_len"
).split()


def test_space_holds_the_issue_keys_and_no_task_key() -> None:
    assert set(DEFAULT_SPACE.keys) == set(ISSUE_KEYS)
    assert not FIXED_KEYS & set(DEFAULT_SPACE.keys)
    assert set(DEFAULT_SPACE.keys) <= set(config_keys())


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_value_is_inside_its_space(preset: str) -> None:
    flat = flatten(preset_config(preset).to_dict())
    space = search_space_for(preset)
    for param in space:
        assert param.validate(flat[param.name]) == flat[param.name], param.name


@pytest.mark.parametrize("preset", PRESETS)
def test_every_example_is_valid_and_the_learning_rate_is_log_scale(preset: str) -> None:
    space = search_space_for(preset)
    for param in space:
        param.validate(param.example())
    assert space["training.optimizer_params.lr"].log


def test_tiny_narrows_and_include_widens() -> None:
    tiny = search_space_for("tiny")
    assert set(tiny["model.d_model"].choices) < set(DEFAULT_SPACE["model.d_model"].choices)
    data = preset_config("tiny").to_dict()
    data["model"]["d_model"] = 512
    data["model"]["n_heads"] = 8
    data["training"]["max_epochs"] = 30
    widened = search_space_for("tiny", include=InformerConfig.model_validate(data))
    assert widened.validate("model.d_model", 512) == 512
    assert widened.validate("training.max_epochs", 30) == 30


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of tiny"):
        search_space_for("huge")


def test_a_float_key_takes_an_int_and_writes_readable_floats() -> None:
    value = DEFAULT_SPACE.validate("model.dropout", 0)
    assert value == 0.0 and type(value) is float
    assert repr(DEFAULT_SPACE.validate("training.optimizer_params.lr", 5.000000000000001e-05)) == (
        "5e-05"
    )


REFUSALS = [
    # bool is not int, even though True == 1 in Python
    ("model.e_layers", True, "expected an integer, got True (bool)"),
    # an int key refuses a float, even an integral one
    ("model.e_layers", 2.0, "expected an integer, got 2.0 (float)"),
    # ranges are inclusive and checked
    ("model.e_layers", 9, "out of range; must be an integer in [1, 4]"),
    ("model.dropout", -0.1, "out of range; must be a number in [0.0, 0.5]"),
    # NaN and infinities are never numbers a config can hold
    ("model.dropout", math.nan, "must be a finite number"),
    ("training.optimizer_params.lr", math.inf, "must be a finite number"),
    # categorical: members only, with exact types (True is not the choice 1)
    ("model.n_heads", 3, "must be one of 1, 2, 4, 8"),
    ("model.n_heads", True, "must be one of 1, 2, 4, 8"),
    ("model.attn", "Prob", "must be one of 'prob', 'full'"),
    # a bool key wants a real bool, not 1 or "true"
    ("model.distil", 1, "expected true or false"),
    ("model.distil", "true", "expected true or false"),
    # strings are length-limited and never echoed in full
    ("model.attn", "x" * 10_000, f"at most {MAX_STRING_LENGTH} characters"),
    # None and containers are not values of a tunable key
    ("data.seq_len", None, "must be one of"),
    ("model.factor", [3], "expected an integer, got [3] (list)"),
]


@pytest.mark.parametrize(
    ("key", "value", "fragment"), REFUSALS, ids=[f"{k}={v!r}"[:40] for k, v, _ in REFUSALS]
)
def test_refusal_names_key_value_rule_and_example(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DEFAULT_SPACE.validate(key, value)
    message = str(caught.value)
    assert message.startswith(f"{key} = ")
    assert fragment in message
    assert f'e.g. {{"key": "{key}", "value": ' in message
    assert len(message) < 400


KEY_REFUSALS = [
    # the forecasting task is fixed for a workspace
    ("data.pred_len", "part of the forecasting task"),
    ("data.path", "part of the forecasting task"),
    # a real config key the search does not tune
    ("training.seed", "not tunable"),
    # a typo gets the closest key
    ("model.d_modle", 'did you mean "model.d_model"'),
    # a bare last part finds its section
    ("lr", 'did you mean "training.optimizer_params.lr"'),
    # a Cyrillic look-alike letter is not the key
    ("model.d_m\u043edel", 'did you mean "model.d_model"'),
    # dunder access is just an unknown key
    ("__class__", "unknown key '__class__'"),
    # a non-string key
    (42, "must be a string"),
]


@pytest.mark.parametrize(("key", "fragment"), KEY_REFUSALS, ids=[repr(k) for k, _ in KEY_REFUSALS])
def test_key_refusals(key: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DEFAULT_SPACE.validate(key, 1)
    assert fragment in str(caught.value)


def test_description_lists_every_key_the_rules_and_the_fixed_task() -> None:
    text = describe_space(search_space_for("tiny"))
    for key in ISSUE_KEYS:
        assert f"- {key}: " in text
    assert "divisible by model.n_heads" in text
    assert "data.pred_len" in text and "log scale" in text
