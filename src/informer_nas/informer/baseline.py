"""The linear baseline: RevIN and one linear map over time (RLinear), trained like Informer.

A search over Informer is worth its compute only where it beats what a linear map does in
seconds: on ETTh1 96 -> 96 this baseline tests 0.387 MSE, better than every Informer we
trained (BENCHMARKS.md). Each input window is normalised per channel (RevIN), one
``seq_len -> pred_len`` map shared by the channels forecasts it (``TimeLinear``, the map
``model.linear_skip`` adds to Informer) and the forecast is mapped back (Li et al.,
"Revisiting long-term time series forecasting", 2023). It trains with the package's
``Trainer`` on the same data section and window caps as the config it is compared with, so
its val MSE is scored on the same target windows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from informer_nas.informer.config import CriterionName, InformerConfig
from informer_nas.informer.data import load_dataset
from informer_nas.informer.revin import RevIN
from informer_nas.informer.training import Trainer
from informer_nas.informer.trend import TimeLinear
from informer_nas.informer.windows import ETTData

MAX_EPOCHS = 200  # of short (capped) epochs, for ``min_steps``
REPORT_MIN_STEPS = 2000  # what ``nas report`` asks for: about 8 epochs of full ETTh1


class RLinear(nn.Module):
    """RevIN, then one linear map over time shared by the channels.

    Args:
        seq_len: look-back length.
        pred_len: forecast horizon.
        c_out: forecast channels, the last ``c_out`` input channels (features MS: the target).
    """

    def __init__(self, seq_len: int, pred_len: int, c_out: int) -> None:
        super().__init__()
        self.revin = RevIN(n_targets=c_out)
        self.linear = TimeLinear(seq_len, pred_len)
        self.c_out = c_out

    def forward(self, x_enc: Tensor, x_mark_enc: Tensor | None = None,
                x_dec: Tensor | None = None, x_mark_dec: Tensor | None = None) -> Tensor:
        """(B, seq_len, C) -> (B, pred_len, c_out); called as Informer is, only the window used."""
        normalised, stats = self.revin.normalise(x_enc)
        forecast = self.linear(normalised[..., normalised.shape[-1] - self.c_out:])
        out: Tensor = self.revin.denormalise(forecast, stats)
        return out


@dataclass(frozen=True)
class BaselineResult:
    """Scores of the baseline's best epoch (val MSE), standardised scale."""

    val_mse: float
    val_mae: float
    test_mse: float
    test_mae: float
    best_epoch: int
    epochs_run: int
    train_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BaselineResult:
        return cls(**{key: values[key] for key in cls.__dataclass_fields__})


def baseline_config(config: InformerConfig, lr: float = 1e-3, max_epochs: int = 10,
                    patience: int = 3, criterion: CriterionName = "MSELoss",
                    seed: int | None = None, num_threads: int | None = None) -> InformerConfig:
    """The baseline's config: ``config``'s data section and window caps; Adam at a constant
    ``lr``, early stopping on val MSE; on CPU (a linear map gains nothing from a GPU).
    """
    values = config.to_dict()
    values["training"].update(
        optimizer_class="Adam", optimizer_params={"lr": lr}, scheduler_class="none",
        criterion_class=criterion, max_epochs=max_epochs, patience=patience, grad_clip=None,
        device="cpu", amp=False, num_threads=num_threads or config.training.num_threads,
        seed=config.training.seed if seed is None else seed,
    )
    return InformerConfig.model_validate(values)


def train_baseline(config: InformerConfig, data: ETTData | None = None,
                   min_steps: int | None = None) -> BaselineResult:
    """Train RLinear with ``config`` (see ``baseline_config``) and score its best epoch.

    Args:
        config: the baseline's config.
        data: preloaded data (default: loaded from ``config`` with its caps).
        min_steps: train at least this many optimizer steps when the epochs are short
            (capped training windows): ``max_epochs`` is raised up to 200, and the patience
            to a tenth of it, so that the linear map converges.

    Raises:
        RuntimeError: the training did not end normally (it has no reason to diverge).
        DataError / ConfigError: unusable data, as for any training.
    """
    training = config.training
    if data is None:
        data = load_dataset(config.data, config.model.embed, training.max_train_windows,
                            training.max_eval_windows)
    steps_per_epoch = data.train.steps(config.data.batch_size, drop_last=True)
    if min_steps is not None and steps_per_epoch * training.max_epochs < min_steps:
        epochs = min(MAX_EPOCHS, -(-min_steps // max(1, steps_per_epoch)))
        values = config.to_dict()
        values["training"].update(max_epochs=epochs,
                                  patience=max(training.patience, epochs // 10))
        config = InformerConfig.model_validate(values)
        training = config.training
    torch.manual_seed(training.seed)
    model = RLinear(config.data.seq_len, config.data.pred_len, data.c_out)
    # its caller logs the outcome in a line: up to 200 epoch lines would bury its log
    result = Trainer(config, data, model=model, log_progress=False).fit()
    if result.status != "ok" or result.val is None or result.test is None:
        raise RuntimeError(f"the linear baseline ended {result.status}: {result.reason}")
    return BaselineResult(result.val.mse, result.val.mae, result.test.mse, result.test.mae,
                          result.best_epoch or 0, len(result.history), result.train_seconds)
