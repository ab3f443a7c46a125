"""The linear baseline (RLinear): its forecast, its config and its training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from informer_nas.informer.baseline import (
    BaselineResult,
    RLinear,
    baseline_config,
    train_baseline,
)
from informer_nas.informer.config import InformerConfig
from informer_nas.informer.presets import preset_config
from informer_nas.informer.training import Trainer

torch.set_num_threads(1)


@pytest.mark.parametrize("c_out", [3, 1])  # features M, and MS (the target is last)
def test_untrained_rlinear_forecasts_each_target_channels_window_mean(c_out: int) -> None:
    x_enc = torch.randn(4, 24, 3) * 3 + torch.arange(3.0)
    forecast = RLinear(24, 6, c_out)(x_enc, None, None, None)
    assert forecast.shape == (4, 6, c_out)
    expected = x_enc.mean(dim=1, keepdim=True)[..., 3 - c_out:].expand(-1, 6, -1)
    torch.testing.assert_close(forecast, expected, rtol=1e-4, atol=1e-4)


def _synthetic_config(csv: Path, **training: Any) -> InformerConfig:
    config = preset_config("tiny").to_dict()
    config["data"].update(path=str(csv), split="ratio", seq_len=24, label_len=12, pred_len=6)
    config["training"].update(max_train_windows=64, max_eval_windows=32, **training)
    return InformerConfig.model_validate(config)


def test_baseline_config_keeps_the_data_and_caps_and_sets_its_own_training(
        synthetic_csv: Path) -> None:
    source = _synthetic_config(synthetic_csv, optimizer_class="SGD", max_epochs=2)
    config = baseline_config(source, lr=3e-3, seed=7)
    assert config.data == source.data
    assert config.training.max_train_windows == 64 and config.training.max_eval_windows == 32
    assert (config.training.optimizer_class, config.training.optimizer_params.lr) == ("Adam", 3e-3)
    assert config.training.scheduler_class == "none" and config.training.max_epochs == 10
    assert config.training.seed == 7 and config.training.device == "cpu"


def test_baseline_learns_and_is_repeatable(synthetic_csv: Path) -> None:
    config = baseline_config(_synthetic_config(synthetic_csv), lr=1e-2)
    untrained = Trainer(config, model=RLinear(24, 6, 3))
    before = untrained.evaluate(untrained.data.val).mse
    result = train_baseline(config)
    assert isinstance(result, BaselineResult)
    assert result.val_mse < 0.9 * before  # better than the window mean it starts as
    assert 1 <= result.best_epoch <= result.epochs_run <= 10
    assert BaselineResult.from_dict(result.to_dict()) == result
    again = train_baseline(config)
    assert (again.val_mse, again.test_mse) == (result.val_mse, result.test_mse)


def test_min_steps_lengthens_short_epochs(synthetic_csv: Path) -> None:
    # 64 windows in batches of 32: 2 steps per epoch, so 2 epochs are 4 steps
    config = baseline_config(_synthetic_config(synthetic_csv), max_epochs=2, patience=1)
    assert train_baseline(config).epochs_run <= 2
    assert train_baseline(config, min_steps=40).epochs_run > 2
