"""Linear forecasts over time: the trend decomposition (``model.decomp``) and the linear
skip (``model.linear_skip``).

Decomposition: the look-back window is split into a trend, its moving average over time
(Autoformer, Wu et al., NeurIPS 2021), and the seasonal remainder. Informer forecasts the
seasonal part; a linear map over time, shared by every channel, forecasts the trend
(DLinear, Zeng et al., AAAI 2023); the two forecasts are added.

Linear skip: a linear map over time, shared by every channel, forecasts from the whole
window, and Informer forecasts what it misses (on ETT a channel-shared linear map of the
normalised window is a strong forecaster on its own: RLinear, Li et al., 2023).

Both are off by default: the reference Informer has neither, and the parameter count of the
default model does not change.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def moving_average(x: Tensor, kernel: int) -> Tensor:
    """(B, L, C) -> (B, L, C): the mean over ``kernel`` steps centred on each step.

    The series is padded by repeating its first and last values, so the trend keeps the
    window's length and does not sag towards zero at its ends.
    """
    before, after = (kernel - 1) // 2, kernel // 2
    padded = F.pad(x.transpose(1, 2), (before, after), mode="replicate")  # (B, C, L + k - 1)
    return F.avg_pool1d(padded, kernel, stride=1).transpose(1, 2)


class TimeLinear(nn.Module):
    """One linear map over time, ``seq_len`` -> ``pred_len`` steps, shared by the channels.

    Starts as the window's mean (every weight 1 / seq_len, no bias), so an untrained map
    forecasts a flat continuation rather than noise.

    Args:
        seq_len: look-back length.
        pred_len: horizon.
    """

    def __init__(self, seq_len: int, pred_len: int) -> None:
        super().__init__()
        self.linear = nn.Linear(seq_len, pred_len)
        nn.init.constant_(self.linear.weight, 1.0 / seq_len)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, seq_len, C) -> (B, pred_len, C)."""
        return self.linear(x.transpose(1, 2)).transpose(1, 2)  # type: ignore[no-any-return]


class TrendHead(TimeLinear):
    """Forecast of the trend: a :class:`TimeLinear` over the window's moving average.

    Args:
        seq_len: look-back length.
        pred_len: horizon.
        kernel: moving-average length.
    """

    def __init__(self, seq_len: int, pred_len: int, kernel: int) -> None:
        super().__init__(seq_len, pred_len)
        self.kernel = kernel

    def decompose(self, x_enc: Tensor) -> tuple[Tensor, Tensor]:
        """(B, seq_len, C) -> seasonal part, trend (each (B, seq_len, C))."""
        trend = moving_average(x_enc, self.kernel)
        return x_enc - trend, trend
