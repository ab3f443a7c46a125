"""A series' CSV file: read and checked (header, values, dates) into a ``RawSeries``, and
the per-column ``Scaler`` fit on its train rows.

Every fault of the file is one ``DataError`` line that says what is wrong and where, and
what to do: a file pandas would misread without a word (a repeated or missing name, dates
whose day and month can swap, an empty line that shifts the line numbers) is refused.
Nothing here imports torch: the checks also run in processes that never train.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from informer_nas.errors import DataError
from informer_nas.informer.config import Frequency
from informer_nas.informer.data_files import stat_or_raise
from informer_nas.plurals import counted


@dataclass(frozen=True)
class RawSeries:
    """A CSV's value columns (target last) and timestamps, validated."""

    path: Path
    columns: tuple[str, ...]
    values: np.ndarray  # (rows, C) float64
    dates: pd.DatetimeIndex


def read_series(path: Path, target: str) -> RawSeries:
    """Read a CSV with a ``date`` column and numeric columns; move ``target`` last.

    Raises:
        DataError: the file is missing or unreadable, has no ``date`` or ``target``
            column, or holds a non-numeric or empty value.
    """
    stat = stat_or_raise(path)
    frame = read_frame(str(path), stat.st_mtime_ns)
    if "date" not in frame.columns:
        dated = _timestamp_column(frame)
        fix = (f"rename column {dated!r} to 'date'" if dated is not None
               else "the CSV needs a 'date' column of timestamps")
        raise DataError(
            f"{path}: no 'date' column (columns: {', '.join(map(str, frame.columns))}); {fix}"
        )
    if target not in frame.columns or target == "date":
        choices = ", ".join(str(c) for c in frame.columns if c != "date")
        if not choices:
            raise DataError(f"{path}: no value column besides 'date'; the CSV needs numeric "
                            "columns to forecast")
        raise DataError(
            f"{path}: target column {target!r} not found; set data.target to one of: {choices}"
        )
    columns = [str(c) for c in frame.columns if c not in ("date", target)] + [target]
    values = np.stack([_numeric_column(frame, name, path) for name in columns], axis=1)
    return RawSeries(path, tuple(columns), values, _parse_dates(frame["date"], path))


def _timestamp_column(frame: pd.DataFrame) -> str | None:
    """The column that looks like the timestamps of a file without 'date': 'Date' in
    another case, else the first whose first value is a timestamp and not a number."""
    named = [str(c) for c in frame.columns if str(c).strip().lower() == "date"]
    if named:
        return named[0]
    if frame.empty:
        return None
    for column in frame.columns:
        first = str(frame[column].iloc[0]).strip()
        if pd.isna(pd.to_numeric(first, errors="coerce")) and _is_timestamp(first):
            return str(column)
    return None


@functools.lru_cache(maxsize=4)
def read_frame(path: str, mtime_ns: int) -> pd.DataFrame:
    # mtime_ns is part of the cache key so that an edited file is read again.
    try:
        # The header as written: pandas renames a repeated name ('OT' -> 'OT.1') and an
        # empty one ('Unnamed: 0') in frame.columns.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
        # Value columns are parsed by pandas's C reader (a column of clean numbers becomes
        # float64, ~8x faster and ~10x smaller than text); any other stays text, checked by
        # _numeric_column. The dates stay text: an all-digit date must not become a number.
        dates = {name: str for name in header.iloc[0] if str(name).strip() == "date"}
        frame = pd.read_csv(path, dtype=dates, keep_default_na=False)
    except UnicodeDecodeError:
        raise DataError(f"{path}: {_not_utf8(path)}; save the file as UTF-8 text") from None
    except (OSError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split())  # one line
        raise DataError(f"{path}: cannot be read as CSV ({reason}); check the file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; point data.path to a CSV") from None
    names = [str(name).strip() for name in header.iloc[0]]  # values are stripped too
    _check_header(names, frame, path)
    _check_blank_lines(path)
    frame.columns = pd.Index(names)
    return frame


def _check_blank_lines(path: str) -> None:
    """Refuse an empty line between data rows: pandas skips it, so every line number that
    a message gives after it would be one too small. Empty lines at the end are harmless."""
    with open(path, "rb") as file:
        content = file.read().rstrip(b"\r\n")
    found = [at for at in (content.find(b"\n\n"), content.find(b"\n\r\n")) if at >= 0]
    if found:
        line = content.count(b"\n", 0, min(found)) + 2
        raise DataError(f"{path}: line {line} is empty, between data rows; remove it (empty "
                        "lines are only allowed at the end)")


def _not_utf8(path: str) -> str:
    """Where and how a file is not UTF-8: UTF-16 (a byte-order mark or zero bytes), else the
    first byte that is not, with its line (a code page such as Latin-1: 'é' is 0xe9)."""
    with open(path, "rb") as file:
        content = file.read()
    if content[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in content[:64]:
        return "it is UTF-16 text, not UTF-8"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        return (f"byte 0x{content[exc.start]:02x} on line {line} is not UTF-8 (Latin-1 or "
                "Windows-1252 text?)")
    return "it is not UTF-8 text"

def _check_header(names: list[str], frame: pd.DataFrame, path: str) -> None:
    """Refuse a header that pandas would silently rename or shift: a name given twice, a
    column without a name, or data rows with more fields than the header has names (pandas
    makes the extra first field a row index)."""
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise DataError(f"{path}: column {repeated!r} appears twice in the header; rename or "
                        "remove one")
    if "" in names:
        raise DataError(
            f"{path}: column {names.index('') + 1} of {len(names)} has no name in the header "
            "(a saved row index, or a comma at the end of every line?); name that column or "
            "remove it"
        )
    separator = next((s for s in (";", "\t", "|") if s in names[0]), None)
    if len(names) == 1 and separator is not None:
        raise DataError(f"{path}: its columns are separated by {separator!r}, not commas; "
                        "save it as a comma-separated CSV")
    if not isinstance(frame.index, pd.RangeIndex) or len(names) != len(frame.columns):
        raise DataError(
            f"{path}: the data rows have more fields than the {counted(len(names), 'name')} in "
            "the header (a trailing comma or an unnamed column?); give every column a name"
        )


def _numeric_column(frame: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    column = frame[name]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = column.to_numpy(dtype=np.float64)  # read as numbers ('inf' included)
    else:  # text: stripped as the header, and booleans refused below
        text = column.astype(str).str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        text = column.astype(str).str.strip()
        row = int(np.flatnonzero(bad)[0])
        shown = str(column.iloc[row])
        what = "empty" if shown.strip() == "" or shown.strip().lower() == "nan" else "non-numeric"
        raise DataError(
            f"{path}: column {name!r} has "
            f"{counted(int(bad.sum()), f'{what} or non-finite value')}, "
            f"first {shown!r} on line {row + 2}; {_numeric_fix(text, bad)}"
        )
    return np.asarray(numbers, dtype=np.float64)


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")


def _numeric_fix(text: pd.Series, bad: np.ndarray) -> str:
    """What to do about a column's values that are not numbers: a format to change, a column
    to remove (no number in it), or rows to fill."""
    wrong = text[bad]
    if wrong.str.fullmatch(_THOUSANDS.pattern).all():
        return "write the numbers without thousands separators"
    if wrong.str.fullmatch(_DECIMAL_COMMA.pattern).all():
        return "write the numbers with '.' as the decimal point"
    if bad.all():
        return "it holds no number: remove the column (or write its values as numbers)"
    return "fill or remove those rows"


# A numeric day and month before the year (01/07/2016, 01.07.2016): their order is not
# written in the value, and pandas reads the month first unless that fails.
_DAY_OR_MONTH_FIRST = re.compile(r"\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?!\d)")


def _parse_dates(column: pd.Series, path: Path) -> pd.DatetimeIndex:
    with warnings.catch_warnings():
        # pandas warns (over several lines) when it falls back to per-value parsing.
        warnings.simplefilter("ignore")
        dates = _to_datetime(column, path, day_first=False)
        if len(column) and _DAY_OR_MONTH_FIRST.match(column.iloc[0]):
            dates = _one_day_month_order(dates, _to_datetime(column, path, day_first=True),
                                         column, path)
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        if dates.dt.tz is not None and _is_timestamp(column.iloc[row]):
            # read in UTC (offsets that change), where a date without an offset is no instant
            raise DataError(
                f"{path}: 'date' value {column.iloc[row]!r} on line {row + 2} has no UTC "
                "offset, while other dates have one; write every date with its offset "
                "(e.g. 2016-07-01 00:00:00+02:00) or none"
            )
        raise DataError(
            f"{path}: 'date' value {column.iloc[row]!r} on line {row + 2} is not a timestamp; "
            "use the format YYYY-MM-DD HH:MM:SS"
        )
    index = pd.DatetimeIndex(dates)
    steps = np.diff(index.asi8)
    if (steps <= 0).any():
        # Shuffled or repeated rows would give windows that jump in time and let the
        # test rows leak into training.
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        how = "repeats" if steps[row - 1] == 0 else "comes before"
        raise DataError(
            f"{path}: the dates must increase row by row, but line {row + 2} "
            f"({column.iloc[row]!r}) {how} line {row + 1} ({column.iloc[row - 1]!r}); "
            "sort the file by date and remove duplicate timestamps"
        )
    return index


def _is_timestamp(value: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when it guesses a format
        return bool(pd.notna(pd.to_datetime(value, errors="coerce")))


def _to_datetime(column: pd.Series, path: Path, day_first: bool) -> pd.Series:
    try:
        try:
            return pd.to_datetime(column, errors="coerce", dayfirst=day_first)
        except ValueError as exc:
            if "timezone" not in str(exc).lower():
                raise
            # offsets that change (daylight saving time): the same instants in UTC
            return pd.to_datetime(column, errors="coerce", dayfirst=day_first, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{path}: the 'date' column cannot be read as one series of timestamps "
            f"({str(exc).splitlines()[0]}); write every date in one format, e.g. "
            "YYYY-MM-DD HH:MM:SS"
        ) from None


def _one_day_month_order(month_first: pd.Series, day_first: pd.Series, column: pd.Series,
                         path: Path) -> pd.Series:
    """The reading of ``01/07/2016``-style dates that holds for every row (13/07/2016 can
    only be day first); refused when both hold and differ (no day above 12)."""
    if day_first.notna().all() and not month_first.notna().all():
        return day_first
    if month_first.notna().all() and day_first.notna().all() and (month_first != day_first).any():
        row = int(np.flatnonzero((month_first != day_first).to_numpy())[0])
        day, month = day_first.iloc[row], month_first.iloc[row]
        raise DataError(
            f"{path}: the dates can be read day first or month first ({column.iloc[row]!r} on "
            f"line {row + 2} is {day.day} {day:%B %Y} or {month.day} {month:%B %Y}) and no day "
            "in the file is above 12; write the dates as YYYY-MM-DD HH:MM:SS"
        )
    return month_first


def infer_freq(dates: pd.DatetimeIndex) -> tuple[Frequency, pd.Timedelta] | None:
    """The time-feature frequency that fits increasing ``dates``, and their median step.

    Rows less than an hour apart need the minute (``t``); hourly and coarser rows get
    ``h`` (a daily file's hour is a constant feature, harmless). None for fewer than 2 rows.
    """
    if len(dates) < 2:
        return None
    step = pd.Timedelta(int(np.median(np.diff(dates.asi8))), unit=dates.unit)
    return ("t" if step < pd.Timedelta(hours=1) else "h"), step


def describe_step(step: pd.Timedelta) -> str:
    seconds = step.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return counted(count, unit)
    return str(step)


def uneven_steps(dates: pd.DatetimeIndex) -> str | None:
    """A line on the steps between rows that differ from the median step (missing rows, a
    gap, uneven sampling), or None when every step is the same. Windows are row counts, so a
    window across such a step holds rows that are not one step apart."""
    if len(dates) < 2:
        return None
    steps = np.diff(dates.asi8)  # in dates.unit, as infer_freq's median
    median = int(np.median(steps))
    odd = np.flatnonzero(steps != median)
    if odd.size == 0:
        return None
    step = pd.Timedelta(median, unit=dates.unit)
    widest = int(odd[np.argmax(steps[odd])])
    largest = pd.Timedelta(int(steps[widest]), unit=dates.unit)
    return (f"uneven dates: {counted(int(odd.size), 'step')} of {len(steps)} between rows "
            f"{'is' if odd.size == 1 else 'are'} not {describe_step(step)} (the largest, "
            f"{describe_step(largest)}, between lines {widest + 2} and {widest + 3}); windows "
            "across them join rows that are not one step apart: fill the missing rows to avoid it")


@dataclass(frozen=True)
class Scaler:
    """Per-column standardisation fit on the train rows (population std, ddof 0)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> Scaler:
        std = rows.std(axis=0)
        # A constant column would divide by zero; leave it centred instead.
        return cls(rows.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return np.asarray((values - self.mean) / self.std)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values * self.std + self.mean)
