"""ETT data: loading, the reference split, the checks on a file's values, and windowing.

The split follows the Informer reference implementation (zhouhaoyi/Informer2020,
``data/data_loader.py``). Reading and checking the CSV itself, and the scaler, are
``series_file``'s; time features, windows and batches are ``windows``'. torch is imported
only where windows are built (``load_dataset``): ``check_data_file`` and ``fit_csv`` run in
processes that never train.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from informer_nas.errors import DataError
from informer_nas.informer.config import DataSection, EmbedKind, Frequency, SplitKind
from informer_nas.informer.data_files import data_file, stat_or_raise
from informer_nas.informer.series_file import (
    RawSeries,
    Scaler,
    describe_step,
    infer_freq,
    read_frame,
    read_series,
    uneven_steps,
)
from informer_nas.plurals import counted

if TYPE_CHECKING:  # torch only where windows are built: the checks run in processes that
    import torch  # never train (`nas init --data`, the start of a workspace's first session)

    from informer_nas.informer.windows import ETTData, WindowSet

logger = logging.getLogger(__name__)

HOURS_PER_MONTH = 30 * 24  # the reference's "month": 30 days
ROWS_PER_HOUR: dict[str, int] = {"h": 1, "t": 4}  # freq t: one row every 15 minutes
SPLIT_NAMES = ("train", "val", "test")


def split_borders(
    n_rows: int, seq_len: int, split: SplitKind, freq: Frequency
) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of train, val and test, inputs included.

    ``ett``: 12/4/4 thirty-day months (ETTh: targets [0, 8640), [8640, 11520),
    [11520, 14400); freq t four times that). ``ratio``: the reference's custom-CSV split,
    70 % / 10 % / 20 %. Val and test start ``seq_len`` rows before their first target.
    """
    if split == "ett":
        month = HOURS_PER_MONTH * ROWS_PER_HOUR[freq]
        ends = [12 * month, 16 * month, 20 * month]
    else:
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        ends = [n_train, n_rows - n_test, n_rows]
    starts = [0, ends[0] - seq_len, ends[1] - seq_len]
    return list(zip(starts, ends, strict=True))


def _check_lengths(raw: RawSeries, borders: list[tuple[int, int]], data: DataSection) -> None:
    n_rows = len(raw.values)
    inferred = infer_freq(raw.dates) if data.split == "ett" else None
    if inferred is not None and inferred[0] != data.freq:  # the months would be miscounted
        raise DataError(
            f"{raw.path}: its rows are {describe_step(inferred[1])} apart, but data.freq is "
            f"{data.freq!r}, so split 'ett' would count its months in "
            f"{'hours' if data.freq == 'h' else '15-minute rows'}; set data.freq to "
            f"{inferred[0]!r}"
        )
    if data.split == "ett" and n_rows < borders[2][1]:
        raise DataError(
            f"{raw.path} has {counted(n_rows, 'row')}; split 'ett' at freq {data.freq!r} needs "
            f"{borders[2][1]} (20 thirty-day months); set data.split to 'ratio' for this file"
        )
    need = data.seq_len + data.pred_len
    for name, (start, end) in zip(SPLIT_NAMES, borders, strict=True):
        if start < 0 or end - start < need:
            # The ETT months are fixed: more rows would not lengthen a part.
            longer = (f"a file of at least {rows_for_ratio_split(data.seq_len, data.pred_len)} "
                      "rows" if data.split == "ratio" else "a longer file")
            raise DataError(
                f"{raw.path}: the {name} part has {counted(max(0, end - max(start, 0)), 'row')} "
                f"(of {n_rows}), fewer than seq_len + pred_len = {need}; use {longer} "
                "or a shorter data.seq_len / data.pred_len"
            )


def rows_for_ratio_split(seq_len: int, pred_len: int) -> int:
    """The fewest rows from which on every file's ratio split (70/10/20 %) holds a window in
    each part. The split rounds its parts down, so a part can lose a row as the file grows
    by one: 104 rows fit seq_len 48 + pred_len 12, 105 do not."""
    need = seq_len + pred_len

    def fits(rows: int) -> bool:
        borders = split_borders(rows, seq_len, "ratio", "h")
        return all(start >= 0 and end - start >= need for start, end in borders)

    # Below these no file fits: the train part is 70 % of the rows, the val targets 10 % + 2.
    rows = max(need, int(need / 0.7) - 2, 10 * (pred_len - 2))
    # The rounding repeats every 10 rows, each part one step longer: 20 fitting in a row
    # fit for good.
    while not all(fits(rows + extra) for extra in range(20)):
        rows += 1
    return rows


def fit_csv(data: DataSection) -> tuple[dict[str, str], list[str]]:
    """Check the CSV of ``data.path`` for a new workspace, and what its data section needs.

    A file without the target column forecasts its last column; the time-feature frequency
    follows the rows' median step (``t`` below an hour, else ``h``); a file too short for
    the ETT months, or whose rows are neither hourly nor 15 minutes apart (the months are
    counted in those rows), is split by ratio (70/10/20 %, as the reference does for its
    own CSVs).

    Returns:
        The settings to change (``{"target": ..., "freq": ..., "split": ...}``) and why,
        one line each.

    Raises:
        DataError: the file cannot serve the windows even then (the message says why).
    """
    path = data_file(data)
    changes: dict[str, str] = {}
    notes: list[str] = []
    frame = read_frame(str(path), stat_or_raise(path).st_mtime_ns)
    candidates = [str(c) for c in frame.columns if c != "date"]
    if data.target not in candidates and candidates and "date" in frame.columns:
        changes["target"] = candidates[-1]
        notes.append(f"target {candidates[-1]!r}: the file has no {data.target!r} column")
    raw = read_series(path, changes.get("target", data.target))
    freq: Frequency = data.freq
    step: pd.Timedelta | None = None
    inferred = infer_freq(raw.dates)
    if inferred is not None:
        freq, step = inferred
        if freq != data.freq:
            changes["freq"] = freq
            notes.append(f"freq {freq!r} ({'with' if freq == 't' else 'no'} minute time "
                         f"features): the median step between rows is {describe_step(step)}")
    uneven = uneven_steps(raw.dates)
    if uneven is not None:
        notes.append(uneven)
    ett_step = pd.Timedelta(minutes=60 // ROWS_PER_HOUR[freq])
    ett_rows = split_borders(len(raw.values), data.seq_len, "ett", freq)[2][1]
    if data.split == "ett" and step is not None and step != ett_step:
        changes["split"] = "ratio"
        notes.append(f"split 'ratio' (70/10/20 %): the ETT months are counted in hourly or "
                     f"15-minute rows, these are {describe_step(step)} apart")
    elif data.split == "ett" and len(raw.values) < ett_rows:
        changes["split"] = "ratio"
        notes.append(f"split 'ratio' (70/10/20 %): {counted(len(raw.values), 'row')} "
                     f"{'is' if len(raw.values) == 1 else 'are'} fewer than the "
                     f"{ett_rows} of the ETT months")
    _checked_series(data.model_copy(update=changes), raw)  # what the trainer would refuse
    return changes, notes


def load_dataset(
    data: DataSection,
    embed: EmbedKind = "timeF",
    max_train_windows: int | None = None,
    max_eval_windows: int | None = None,
) -> ETTData:
    """Load, split, scale and window a CSV as the config's data section says.

    Args:
        data: the config's data section (path None: the bundled ETTh1.csv).
        embed: ``timeF`` gives float time features, ``fixed`` / ``learned`` calendar columns.
        max_train_windows: keep an evenly spaced subset of the train windows.
        max_eval_windows: the same for val and test.

    Raises:
        DataError: the file cannot serve the requested windows (the message says why).
    """
    import torch

    from informer_nas.informer.windows import ETTData, calendar_features, time_features

    path, raw, borders, columns, scaler, standardised = _checked_series(data)
    scaled = torch.from_numpy(standardised.astype(np.float32))
    if embed == "timeF":
        marks = torch.from_numpy(time_features(raw.dates, data.freq))
    else:
        marks = torch.from_numpy(calendar_features(raw.dates, data.freq))
    caps = (max_train_windows, max_eval_windows, max_eval_windows)
    splits = [
        _window_set(scaled, marks, border, cap, data)
        for border, cap in zip(borders, caps, strict=True)
    ]
    n_in = len(columns)
    c_out = 1 if data.features in ("S", "MS") else n_in
    uneven = uneven_steps(raw.dates)
    if uneven is not None:
        logger.warning("data %s: %s", path, uneven)
    logger.info(
        "data %s: %d rows, columns %s, windows train %d val %d test %d",
        path, len(standardised), ",".join(columns), *(len(s) for s in splits),
    )
    train, val, test = splits
    return ETTData(train, val, test, scaler, columns, path, n_in, n_in, c_out, borders)


def check_data_file(data: DataSection) -> None:
    """Raise the ``DataError`` that ``load_dataset`` would (a missing column, too few rows,
    non-numeric values...) without building any window: a session checks its data before
    its first training."""
    _checked_series(data)


def _checked_series(
    data: DataSection, raw: RawSeries | None = None
) -> tuple[Path, RawSeries, list[tuple[int, int]], tuple[str, ...], Scaler, np.ndarray]:
    """The file, its series (``raw`` when already read), the split borders, the columns
    used, the train-fitted scaler and the standardised values, every check of
    ``load_dataset`` passed."""
    path = data_file(data)
    raw = raw if raw is not None else read_series(path, data.target)
    borders = split_borders(len(raw.values), data.seq_len, data.split, data.freq)
    _check_lengths(raw, borders, data)
    values = raw.values[:, -1:] if data.features == "S" else raw.values
    columns = raw.columns[-1:] if data.features == "S" else raw.columns
    with np.errstate(over="ignore"):  # an overflow is refused below, in one line
        scaler = Scaler.fit(values[borders[0][0] : borders[0][1]])
    standardised = np.where(np.isfinite(scaler.std), scaler.transform(values), np.inf)
    _check_magnitudes(standardised, values, borders, columns, path)
    _check_train_spread(values, borders, columns, path)
    return path, raw, borders, columns, scaler, standardised


MAX_STANDARDISED = 1e15  # squares and their sums stay far below float32's 3.4e38


def _check_magnitudes(standardised: np.ndarray, values: np.ndarray,
                      borders: list[tuple[int, int]], columns: Sequence[str], path: Path) -> None:
    """Refuse values so far from the train rows' mean (or so large that the train statistics
    overflow: ``standardised`` is inf for such a column) that training and scoring in float32
    overflow: a run would end 'ok' with no test MSE, or 'diverged' for a data fault. The
    worst value named is the largest of the column where its statistics overflowed.

    Raises:
        DataError: the column, the line of the worst value and what to do.
    """
    used = slice(borders[0][0], max(end for _, end in borders))
    size = np.abs(standardised[used])
    if size.size == 0 or size.max() <= MAX_STANDARDISED:
        return
    overflowed = np.isinf(size).all(axis=0)
    size = np.where(overflowed, np.abs(values[used]), size)  # there: its largest value
    row, column = np.unravel_index(int(np.argmax(size)), size.shape)
    line = used.start + int(row) + 2  # the header is line 1
    raise DataError(
        f"{path}: column {columns[int(column)]!r} has the value {values[used][row, column]:.6g} on "
        f"line {line}, too far from the train rows' values to train or score on in float32; "
        "fix or remove that row"
    )


def _check_train_spread(values: np.ndarray, borders: list[tuple[int, int]],
                        columns: Sequence[str], path: Path) -> None:
    """Refuse a target that is constant over the train rows (nothing to learn; every score
    would be that of a constant), and a column constant there that varies in the val or
    test rows: the scaler, fit on the train rows, cannot scale it (its std is taken as 1),
    so those rows reach the model in raw units.

    Raises:
        DataError: the column, its train value, where it changes and what to do.
    """
    start, end = borders[0]
    used_end = max(stop for _, stop in borders)
    train = values[start:end]
    constant = np.flatnonzero((train == train[0]).all(axis=0))
    lines = f"lines {start + 2}-{end + 1}"  # the header is line 1
    target = len(columns) - 1
    if target in constant:
        raise DataError(
            f"{path}: the target column {columns[target]!r} is constant "
            f"({train[0, target]:.6g}) over the train rows ({lines}), so there is nothing to "
            "learn; set data.target to a column that varies"
        )
    for column in map(int, constant):
        changed = np.flatnonzero(values[end:used_end, column] != train[0, column])
        if changed.size:
            row = end + int(changed[0])
            raise DataError(
                f"{path}: column {columns[column]!r} is constant ({train[0, column]:.6g}) over "
                f"the train rows ({lines}) but not after (line {row + 2}: "
                f"{values[row, column]:.6g}), so the train rows cannot scale it; remove the "
                "column (or set data.features to 'S')"
            )


def _window_set(
    scaled: torch.Tensor,
    marks: torch.Tensor,
    border: tuple[int, int],
    cap: int | None,
    data: DataSection,
) -> WindowSet:
    import torch

    from informer_nas.informer.windows import WindowSet, evenly_spaced

    start, end = border
    count = end - start - data.seq_len - data.pred_len + 1
    starts = torch.from_numpy(evenly_spaced(count, cap))
    return WindowSet(
        scaled[start:end].contiguous(), marks[start:end].contiguous(), starts,
        data.seq_len, data.label_len, data.pred_len, target_only=data.features == "MS",
    )
