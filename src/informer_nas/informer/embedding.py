"""Informer input embedding: token convolution + sinusoidal positions + calendar features.

Time marks (``x_mark``) depend on ``embed``:

- ``timeF``: float features, 4 columns for freq ``h`` and 5 for ``t`` (a biased linear map).
- ``fixed`` / ``learned``: integer-valued calendar columns ``[month (1-12), day (1-31),
  weekday (0-6), hour (0-23)]`` plus ``minute // 15`` (0-3) as a 5th column for freq ``t``.
  Tables are sized as the reference's (month 13, day 32, weekday 7, hour 24, minute 4);
  ``fixed`` tables are sinusoidal buffers (not parameters), ``learned`` are ``nn.Embedding``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from informer_nas.errors import ConfigError
from informer_nas.informer.config import EmbedKind
from informer_nas.informer.dropout import Dropout

MAX_POSITIONS = 5000
TIME_FEATURES = {"h": 4, "t": 5}
# (column in x_mark, table size); created in the reference's order, so that a seeded
# model starts from the reference's initial weights
MINUTE_TABLE = (4, 4)
CALENDAR_TABLES = {"hour": (3, 24), "weekday": (2, 7), "day": (1, 32), "month": (0, 13)}


def n_time_marks(freq: str) -> int:
    """Number of time-mark columns for a frequency (the same for every embedding kind).

    Raises:
        ConfigError: unknown frequency.
    """
    if freq not in TIME_FEATURES:
        raise ConfigError(f"unknown data.freq {freq!r}; use 'h' (hourly) or 't' (minutely)")
    return TIME_FEATURES[freq]


def sinusoid_table(n_positions: int, d_model: int) -> Tensor:
    """(n_positions, d_model) table: sin on even columns, cos on odd ones."""
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return table


def circular_conv3(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """Apply a kernel-3 ``Conv1d`` with circular padding 1 to a time-major tensor.

    Same result as ``conv(x.transpose(1, 2)).transpose(1, 2)``, computed as one matrix
    product over the concatenated steps ``[x[t - 1], x[t], x[t + 1]]`` (indices mod L), so
    the output is a contiguous (B, L, C_out) and no transposes are needed on either side.

    Args:
        x: (B, L, C_in).
        conv: a ``Conv1d(C_in, C_out, kernel_size=3)``; only its weight and bias are used.
    """
    windows = torch.cat([x.roll(1, dims=1), x, x.roll(-1, dims=1)], dim=-1)  # (B, L, 3 C_in)
    weight = conv.weight.transpose(1, 2).reshape(conv.out_channels, -1)  # (C_out, 3 C_in)
    return F.linear(windows, weight, conv.bias)


class TokenEmbedding(nn.Module):
    """Conv1d over time (kernel 3, circular padding) from ``c_in`` channels to ``d_model``."""

    def __init__(self, c_in: int, d_model: int) -> None:
        super().__init__()
        self.token_conv = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1,
                                    padding_mode="circular")
        nn.init.kaiming_normal_(self.token_conv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, c_in) -> (B, L, d_model)."""
        return circular_conv3(x, self.token_conv)


class PositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions (a non-persistent buffer, up to 5000 steps)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.register_buffer("table", sinusoid_table(MAX_POSITIONS, d_model), persistent=False)
        self.table: Tensor

    def forward(self, length: int) -> Tensor:
        """The first ``length`` positions, (length, d_model)."""
        if length > MAX_POSITIONS:
            raise ConfigError(
                f"sequence length {length} exceeds the {MAX_POSITIONS} positional embeddings; "
                "shorten data.seq_len or data.label_len + data.pred_len"
            )
        return self.table[:length]


class CalendarEmbedding(nn.Module):
    """Sum of per-field calendar embeddings (``fixed`` sinusoid buffers or ``learned``)."""

    def __init__(self, d_model: int, embed: EmbedKind, freq: str) -> None:
        super().__init__()
        fields = {"minute": MINUTE_TABLE} if n_time_marks(freq) == 5 else {}
        fields.update(CALENDAR_TABLES)
        self.columns = {name: column for name, (column, _) in fields.items()}
        self.is_fixed = embed == "fixed"
        for name, (_, size) in fields.items():
            if self.is_fixed:
                self.register_buffer(f"{name}_table", sinusoid_table(size, d_model),
                                     persistent=False)
            else:
                self.add_module(f"{name}_embed", nn.Embedding(size, d_model))

    def forward(self, x_mark: Tensor) -> Tensor:
        """(B, L, n_mark) integer-valued calendar columns -> (B, L, d_model)."""
        codes = x_mark.long()
        total: Tensor | None = None
        for name, column in self.columns.items():
            if self.is_fixed:
                part = F.embedding(codes[:, :, column], getattr(self, f"{name}_table"))
            else:
                part = getattr(self, f"{name}_embed")(codes[:, :, column])
            total = part if total is None else total + part
        assert total is not None
        return total


class DataEmbedding(nn.Module):
    """Token + positional + temporal embedding, then dropout.

    Args:
        c_in: input channels.
        d_model: model width.
        embed: ``timeF`` (linear on float time features), ``fixed`` or ``learned``.
        freq: ``h`` or ``t``.
        dropout: dropout probability.
    """

    def __init__(self, c_in: int, d_model: int, embed: EmbedKind, freq: str,
                 dropout: float) -> None:
        super().__init__()
        self.value_embedding = TokenEmbedding(c_in, d_model)
        self.position_embedding = PositionalEmbedding(d_model)
        self.temporal_embedding: nn.Module
        if embed == "timeF":
            self.temporal_embedding = nn.Linear(n_time_marks(freq), d_model)
        else:
            self.temporal_embedding = CalendarEmbedding(d_model, embed, freq)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, x_mark: Tensor) -> Tensor:
        """(B, L, c_in), (B, L, n_mark) -> (B, L, d_model)."""
        # The first sum is out of place: in place on the convolution's output (a view) would
        # cost two copies in the backward; the second goes in place on that fresh tensor.
        out: Tensor = self.value_embedding(x) + self.position_embedding(x.shape[1])
        out += self.temporal_embedding(x_mark)
        return self.dropout(out)  # type: ignore[no-any-return]
