"""Reversible instance normalisation (Kim et al., ICLR 2022), parameter-free.

Each input window is normalised per channel with its own mean and standard deviation; the
forecast is mapped back with the same statistics.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class WindowStats(NamedTuple):
    """Per-window, per-channel statistics, each (B, 1, C)."""

    mean: Tensor
    std: Tensor

    def normalise(self, x: Tensor) -> Tensor:
        """(B, L, C) in the data's units -> normalised with these statistics."""
        return (x - self.mean) / self.std


class RevIN:
    """Per-window, per-channel normalisation of the inputs, undone on the forecast.

    Args:
        n_targets: forecast channels; they are the last ``n_targets`` input channels (with
            features MS the target, e.g. ETT's OT, is the last column).
        eps: added to the variance.
    """

    def __init__(self, n_targets: int, eps: float = 1e-5) -> None:
        self.n_targets = n_targets
        self.eps = eps

    def normalise(self, x_enc: Tensor) -> tuple[Tensor, WindowStats]:
        """Normalise a window (B, seq_len, C) per channel; return it and its statistics.

        The statistics also normalise the decoder's observed part
        (``WindowStats.normalise``) and undo the normalisation on the forecast
        (``denormalise``).
        """
        mean = x_enc.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x_enc.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        stats = WindowStats(mean, std)
        return stats.normalise(x_enc), stats

    def denormalise(self, forecast: Tensor, stats: WindowStats) -> Tensor:
        """(B, pred_len, n_targets) in normalised units -> the data's units."""
        mean = stats.mean[..., -self.n_targets:]
        std = stats.std[..., -self.n_targets:]
        return forecast * std + mean
