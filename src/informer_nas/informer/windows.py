"""What the model consumes: time features and window batches (the train-fitted scaler is
``series_file``'s).

The scaler and time features follow the Informer reference implementation
(zhouhaoyi/Informer2020, ``data/data_loader.py``). Windows are never materialised one by
one: a split keeps its scaled rows as one tensor and a batch is an index gather. Loading
and splitting a CSV into these is ``data``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from informer_nas.informer.config import Frequency
from informer_nas.informer.series_file import Scaler


def time_features(dates: pd.DatetimeIndex, freq: Frequency) -> np.ndarray:
    """The reference's ``timeF`` encoding, each feature in [-0.5, 0.5].

    Columns for freq h: hour, day of week, day of month, day of year; freq t puts minute
    of hour first.
    """
    columns = [
        dates.hour.to_numpy() / 23.0 - 0.5,
        dates.day_of_week.to_numpy() / 6.0 - 0.5,
        (dates.day.to_numpy() - 1) / 30.0 - 0.5,
        (dates.day_of_year.to_numpy() - 1) / 365.0 - 0.5,
    ]
    if freq == "t":
        columns.insert(0, dates.minute.to_numpy() / 59.0 - 0.5)
    return np.stack(columns, axis=1).astype(np.float32)


def calendar_features(dates: pd.DatetimeIndex, freq: Frequency) -> np.ndarray:
    """Integer calendar columns for ``fixed`` / ``learned`` embeddings.

    Columns: month, day, weekday, hour, and for freq t minute // 15.
    """
    columns = [dates.month, dates.day, dates.day_of_week, dates.hour]
    if freq == "t":
        columns.append(dates.minute // 15)
    return np.stack([np.asarray(c) for c in columns], axis=1).astype(np.int64)


@dataclass
class Batch:
    """Model inputs and targets of one batch (all on the split's device)."""

    x_enc: torch.Tensor  # (B, seq_len, enc_in)
    x_mark_enc: torch.Tensor  # (B, seq_len, n_marks)
    x_dec: torch.Tensor  # (B, label_len + pred_len, dec_in); the last pred_len steps are 0
    x_mark_dec: torch.Tensor  # (B, label_len + pred_len, n_marks)
    y: torch.Tensor  # (B, pred_len, c_out)

    def __len__(self) -> int:
        return int(self.x_enc.shape[0])


class WindowSet:
    """The windows of one split: scaled rows plus window start rows, gathered per batch.

    Args:
        values: (rows, C) scaled values of the split's row range.
        marks: (rows, n_marks) time features (float) or calendar columns (long).
        starts: (n,) the first encoder row of each window.
        seq_len, label_len, pred_len: window geometry.
        target_only: predict only the last column (features MS).
    """

    def __init__(
        self,
        values: torch.Tensor,
        marks: torch.Tensor,
        starts: torch.Tensor,
        seq_len: int,
        label_len: int,
        pred_len: int,
        target_only: bool,
    ) -> None:
        self.values, self.marks, self.starts = values, marks, starts
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.target_only = target_only
        device = values.device
        self._enc_offsets = torch.arange(seq_len, device=device)
        self._dec_offsets = torch.arange(
            seq_len - label_len, seq_len + pred_len, device=device
        )

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> WindowSet:
        """A copy of this split on ``device``."""
        return WindowSet(
            self.values.to(device), self.marks.to(device), self.starts.to(device),
            self.seq_len, self.label_len, self.pred_len, self.target_only,
        )

    def batch(self, positions: torch.Tensor) -> Batch:
        """Gather the windows at ``positions`` (indices into this split's windows)."""
        starts = self.starts[positions.to(self.device)].unsqueeze(1)  # (B, 1)
        enc_rows = starts + self._enc_offsets  # (B, seq_len)
        dec_rows = starts + self._dec_offsets  # (B, label_len + pred_len)
        dec_values = self.values[dec_rows]
        known = dec_values[:, : self.label_len]
        x_dec = torch.cat([known, torch.zeros_like(dec_values[:, self.label_len :])], dim=1)
        future = dec_values[:, self.label_len :]
        y = future[..., -1:] if self.target_only else future
        return Batch(self.values[enc_rows], self.marks[enc_rows], x_dec, self.marks[dec_rows], y)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield batches in order or shuffled with ``generator``.

        ``drop_last`` drops an incomplete last batch (as the reference's train loader),
        but never the only batch.
        """
        count = len(self)
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        order = order.to(self.device)
        stop = count - count % batch_size if drop_last and count >= batch_size else count
        for begin in range(0, stop, batch_size):
            yield self.batch(order[begin : min(begin + batch_size, stop)])

    def steps(self, batch_size: int, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields."""
        count = len(self)
        if drop_last and count >= batch_size:
            return count // batch_size
        return -(-count // batch_size)


@dataclass
class ETTData:
    """The three splits of a dataset with what the model needs to know about it."""

    train: WindowSet
    val: WindowSet
    test: WindowSet
    scaler: Scaler
    columns: tuple[str, ...]
    path: Path
    enc_in: int
    dec_in: int
    c_out: int
    borders: list[tuple[int, int]]

    def to(self, device: torch.device | str) -> ETTData:
        """A copy with every split on ``device``."""
        return ETTData(
            self.train.to(device), self.val.to(device), self.test.to(device), self.scaler,
            self.columns, self.path, self.enc_in, self.dec_in, self.c_out, self.borders,
        )


def evenly_spaced(count: int, cap: int | None) -> np.ndarray:
    """A deterministic, evenly spaced subset of ``range(count)`` of at most ``cap`` items."""
    if cap is None or cap >= count:
        return np.arange(count)
    return (np.arange(cap) * count) // cap
