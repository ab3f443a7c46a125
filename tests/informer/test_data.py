"""ETT data: the reference split, scaling, time features, batches and bad-input messages."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from informer_nas.errors import DataError
from informer_nas.informer.config import DataSection
from informer_nas.informer.data import fit_csv, load_dataset, split_borders
from informer_nas.informer.data_files import bundled_csv_path
from informer_nas.informer.series_file import Scaler, read_series
from informer_nas.informer.windows import (
    ETTData,
    calendar_features,
    evenly_spaced,
    time_features,
)

SHARED_ETT = Path("/work/shared/data/ETT-small")


@pytest.fixture(scope="module")
def etth1() -> ETTData:
    return load_dataset(DataSection())


def test_bundled_etth1_split_and_window_counts(etth1: ETTData) -> None:
    # The reference's 12/4/4 thirty-day months; 96 -> 24 gives 8521 / 2857 / 2857 windows.
    assert etth1.borders == [(0, 8640), (8640 - 96, 11520), (11520 - 96, 14400)]
    assert [len(etth1.train), len(etth1.val), len(etth1.test)] == [8521, 2857, 2857]


def test_bundled_etth1_scaler_matches_train_statistics(etth1: ETTData) -> None:
    # Published train-part statistics of ETTh1 (population std).
    scaler = etth1.scaler
    mean = [7.9377, 2.0210, 5.0798, 0.7462, 2.7818, 0.7885, 17.1283]
    std = [5.8127, 2.0901, 5.5188, 1.9264, 1.0235, 0.6302, 9.1765]
    np.testing.assert_allclose(scaler.mean, mean, atol=1e-4)
    np.testing.assert_allclose(scaler.std, std, atol=1e-4)


@pytest.mark.parametrize(
    ("n_rows", "seq_len", "split", "freq", "expected"),
    [
        # ETTm: 15-minute rows, every border four times ETTh's
        (69680, 96, "ett", "t", [(0, 34560), (34464, 46080), (45984, 57600)]),
        # custom CSV: int(0.7 n) / rest / int(0.2 n), val and test start seq_len earlier
        (1000, 96, "ratio", "h", [(0, 700), (604, 800), (704, 1000)]),
    ],
    ids=["ett-minute", "ratio"],
)
def test_split_borders(
    n_rows: int, seq_len: int, split: str, freq: str, expected: list[tuple[int, int]]
) -> None:
    assert split_borders(n_rows, seq_len, split, freq) == expected  # type: ignore[arg-type]


def test_scaler_is_fit_on_train_rows_only(tmp_path: Path, synthetic_csv: Path) -> None:
    frame = pd.read_csv(synthetic_csv)
    frame.loc[300:, ["HUFL", "HULL", "OT"]] += 1000.0  # only val / test rows move
    path = tmp_path / "shifted.csv"
    frame.to_csv(path, index=False)
    section = DataSection(path=str(path), split="ratio", seq_len=24, label_len=12, pred_len=6)
    data = load_dataset(section)
    train_rows = frame[["HUFL", "HULL", "OT"]].to_numpy()[:280]  # int(0.7 * 400)
    np.testing.assert_allclose(data.scaler.mean, train_rows.mean(axis=0))
    np.testing.assert_allclose(data.scaler.std, train_rows.std(axis=0))  # ddof 0


def test_time_features_for_a_known_timestamp() -> None:
    # 2016-07-01 12:45 is a Friday (weekday 4), day of year 183 (leap year).
    dates = pd.DatetimeIndex(["2016-07-01 12:45:00"])
    hourly = [12 / 23 - 0.5, 4 / 6 - 0.5, 0 / 30 - 0.5, 182 / 365 - 0.5]
    np.testing.assert_allclose(time_features(dates, "h")[0], hourly, rtol=1e-6)
    np.testing.assert_allclose(time_features(dates, "t")[0], [45 / 59 - 0.5, *hourly], rtol=1e-6)
    assert calendar_features(dates, "h")[0].tolist() == [7, 1, 4, 12]
    assert calendar_features(dates, "t")[0].tolist() == [7, 1, 4, 12, 3]


@pytest.mark.parametrize("embed", ["timeF", "fixed", "learned"])
@pytest.mark.parametrize(
    ("features", "n_in", "c_out"), [("M", 3, 3), ("S", 1, 1), ("MS", 3, 1)], ids=["M", "S", "MS"]
)
def test_batch_shapes(
    synthetic_csv: Path, features: str, n_in: int, c_out: int, embed: str
) -> None:
    section = DataSection.model_validate({
        "path": str(synthetic_csv), "split": "ratio", "features": features,
        "seq_len": 24, "label_len": 12, "pred_len": 6,
    })
    data = load_dataset(section, embed=embed)  # type: ignore[arg-type]
    assert (data.enc_in, data.dec_in, data.c_out) == (n_in, n_in, c_out)
    batch = data.train.batch(torch.arange(5))
    n_marks = 4
    assert batch.x_enc.shape == (5, 24, n_in)
    assert batch.x_mark_enc.shape == (5, 24, n_marks)
    assert batch.x_dec.shape == (5, 18, n_in)
    assert batch.x_mark_dec.shape == (5, 18, n_marks)
    assert batch.y.shape == (5, 6, c_out)
    assert batch.x_mark_enc.dtype == (torch.float32 if embed == "timeF" else torch.int64)


def test_batch_content_follows_the_reference_windows(synthetic_csv: Path) -> None:
    section = DataSection(path=str(synthetic_csv), split="ratio", features="MS",
                          seq_len=24, label_len=12, pred_len=6)
    data = load_dataset(section)
    values = data.train.values
    batch = data.train.batch(torch.tensor([3]))
    torch.testing.assert_close(batch.x_enc[0], values[3:27])
    torch.testing.assert_close(batch.x_dec[0, :12], values[15:27])  # the last label_len steps
    assert torch.count_nonzero(batch.x_dec[0, 12:]) == 0  # then pred_len zeros
    torch.testing.assert_close(batch.y[0], values[27:33, -1:])  # MS: the target, last column
    torch.testing.assert_close(batch.x_mark_dec[0], data.train.marks[15:33])


def test_caps_take_an_evenly_spaced_deterministic_subset() -> None:
    assert evenly_spaced(10, 4).tolist() == [0, 2, 5, 7]
    assert evenly_spaced(3, 10).tolist() == [0, 1, 2]
    data = load_dataset(DataSection(), max_train_windows=100, max_eval_windows=50)
    assert [len(data.train), len(data.val), len(data.test)] == [100, 50, 50]
    assert data.train.starts[-1] < 8521 and data.train.starts[1] == 85


def test_batches_cover_every_window_and_shuffle_reproducibly(synthetic_csv: Path) -> None:
    section = DataSection(path=str(synthetic_csv), split="ratio", seq_len=24, label_len=12,
                          pred_len=6, batch_size=8)
    windows = load_dataset(section).train  # 280 - 30 + 1 = 251 windows
    assert sum(len(b) for b in windows.batches(64)) == len(windows) == 251
    assert windows.steps(64) == 4 and windows.steps(64, drop_last=True) == 3
    first = [b.x_enc for b in windows.batches(8, True, torch.Generator().manual_seed(1))]
    again = [b.x_enc for b in windows.batches(8, True, torch.Generator().manual_seed(1))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # drop_last never drops the only batch
    assert windows.steps(1000, drop_last=True) == 1


def test_scaler_keeps_constant_columns_finite() -> None:
    scaler = Scaler.fit(np.array([[1.0, 2.0], [1.0, 4.0]]))
    assert np.isfinite(scaler.transform(np.array([[5.0, 3.0]]))).all()


def _one_line_refusal(load: Callable[[DataSection], object], path: Path) -> str:
    """The DataError ``load`` raises for ``path`` (ratio split, seq 24, label 12, pred 6),
    checked to be one line that names the file."""
    with pytest.raises(DataError) as caught:
        load(DataSection(path=str(path), split="ratio", seq_len=24, label_len=12, pred_len=6))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        # a missing file names the path and data.path
        ("missing", ["not found", "data.path"]),
        ("directory", ["is a directory, not a file", "data.path"]),
        # a missing target names the column and the choices
        ("target", ["'Power'", "data.target", "HUFL"]),
        # a non-numeric value names the column, the value and its line
        ("text", ["'OT'", "'abc'", "line 4"]),
        # an empty (NaN) value names the column and the line
        ("empty", ["'HULL'", "empty", "line 3"]),
        # too few rows for the reference split names the length and the fix
        ("short", ["400 rows", "14400", "data.split"]),
        # too few rows for the requested windows names the lengths
        ("windows", ["seq_len + pred_len", "val part has 136 rows"]),
        # no date column
        ("nodate", ["'date'"]),
        # another separator is named (it said: no 'date' column (columns: date;HUFL;...))
        ("semicolons", ["separated by ';'", "comma-separated"]),
        # with decimal commas too (it said: the data rows have more fields than the 1 name)
        ("decimal-commas", ["separated by ';'", "comma-separated"]),
        # a column twice once the header's spaces are stripped
        ("twice", ["column 'OT' appears twice"]),
        # a row with too many fields: pandas's message is two lines
        ("fields", ["cannot be read as CSV", "Expected"]),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bad_input_raises_one_line_data_error(
    tmp_path: Path, synthetic_csv: Path, case: str, phrases: list[str]
) -> None:
    lines = synthetic_csv.read_text(encoding="utf-8").splitlines()
    kwargs: dict[str, object] = {"split": "ratio", "seq_len": 24, "label_len": 12, "pred_len": 6}
    path = synthetic_csv
    if case == "missing":
        path = tmp_path / "nope.csv"
    elif case == "directory":  # it said "cannot be read as CSV ([Errno 21] ...)"
        path = tmp_path
    elif case == "target":
        kwargs["target"] = "Power"
    elif case == "text":
        lines[3] = lines[3].rsplit(",", 1)[0] + ",abc"
        path = _write(tmp_path / "bad.csv", "\n".join(lines))
    elif case == "empty":
        parts = lines[2].split(",")
        parts[2] = ""
        lines[2] = ",".join(parts)
        path = _write(tmp_path / "bad.csv", "\n".join(lines))
    elif case == "short":
        kwargs["split"] = "ett"
    elif case == "windows":
        kwargs.update(seq_len=96, label_len=48, pred_len=48)
    elif case == "nodate":
        path = _write(tmp_path / "bad.csv", "\n".join(["when" + lines[0][4:], *lines[1:]]))
    elif case == "semicolons":
        path = _write(tmp_path / "bad.csv", "\n".join(line.replace(",", ";") for line in lines))
    elif case == "decimal-commas":
        path = _write(tmp_path / "bad.csv", "\n".join(
            line.replace(",", ";").replace(".", ",") for line in lines))
    elif case == "twice":
        path = _write(tmp_path / "bad.csv", "\n".join([lines[0] + ", OT",
                                                       *(line + ",1" for line in lines[1:])]))
    elif case == "fields":
        lines[5] += ",1,2"
        path = _write(tmp_path / "bad.csv", "\n".join(lines))
    with pytest.raises(DataError) as caught:
        load_dataset(DataSection.model_validate({"path": str(path), **kwargs}))
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    for phrase in phrases:
        assert phrase in message


@pytest.mark.skipif(not SHARED_ETT.is_dir(), reason=f"{SHARED_ETT} (shared ETT data) is absent")
@pytest.mark.parametrize(
    ("name", "freq", "counts"),
    [
        ("ETTh2", "h", [8521, 2857, 2857]),
        ("ETTm1", "t", [34441, 11497, 11497]),
        ("ETTm2", "t", [34441, 11497, 11497]),
    ],
)
def test_other_ett_files_load(name: str, freq: str, counts: list[int]) -> None:
    section = DataSection.model_validate({"path": str(SHARED_ETT / f"{name}.csv"), "freq": freq})
    data = load_dataset(section, embed="fixed")
    assert [len(data.train), len(data.val), len(data.test)] == counts
    assert data.train.marks.shape[1] == (5 if freq == "t" else 4)
    assert data.columns[-1] == "OT"


def _dated_csv(path: Path, rows: int, step: str, dates: list[str] | None = None) -> Path:
    """A CSV of ``rows`` rows ``step`` apart from 2016-07-01 (or the given ``dates``)."""
    if dates is None:
        dates = list(pd.date_range("2016-07-01", periods=rows, freq=step)
                     .strftime("%Y-%m-%d %H:%M:%S"))
    lines = ["date,HUFL,OT", *(f"{d},{i % 7 / 7:.3f},{i % 5 / 5:.3f}" for i, d in enumerate(dates))]
    return _write(path, "\n".join(lines) + "\n")


def test_fit_csv_gives_15_minute_rows_freq_t_and_the_ett_months_of_etth_times_4(
    tmp_path: Path,
) -> None:
    # Exactly 20 thirty-day months of 15-minute rows: ETTm's split, not hourly "months".
    path = _dated_csv(tmp_path / "ettm.csv", 57600, "15min")
    section = DataSection(path=str(path), seq_len=24, label_len=12, pred_len=6)
    changes, notes = fit_csv(section)
    assert changes == {"freq": "t"}
    assert len(notes) == 1 and notes[0].startswith("freq 't'") and "15 minutes" in notes[0]
    data = load_dataset(section.model_copy(update=changes))
    assert data.borders == [(0, 34560), (34560 - 24, 46080), (46080 - 24, 57600)]
    minutes = data.train.marks[:4, 0]  # freq t: the minute of the hour comes first
    assert data.train.marks.shape[1] == 5 and len(set(minutes.tolist())) == 4


@pytest.mark.parametrize(
    ("rows", "step", "config", "changes", "phrase"),
    [
        # hourly rows under a minutely config go back to freq h
        (600, "1h", {"freq": "t", "split": "ratio"}, {"freq": "h"}, "1 hour"),
        # any step below an hour needs the minute
        (600, "5min", {"split": "ratio"}, {"freq": "t"}, "5 minutes"),
        # daily rows keep freq h, and the ETT months (counted in rows) do not apply to them
        (15000, "1D", {}, {"split": "ratio"}, "1 day apart"),
    ],
    ids=["hourly", "five-minute", "daily"],
)
def test_fit_csv_infers_the_frequency_from_the_dates(
    tmp_path: Path, rows: int, step: str, config: dict[str, str], changes: dict[str, str],
    phrase: str,
) -> None:
    path = _dated_csv(tmp_path / "mine.csv", rows, step)
    section = DataSection.model_validate(
        {"path": str(path), "seq_len": 24, "label_len": 12, "pred_len": 6, **config})
    got, notes = fit_csv(section)
    assert got == changes
    assert len(notes) == 1 and phrase in notes[0]


@pytest.mark.parametrize(
    ("case", "phrase"),
    [("shuffled", "comes before"), ("repeated", "repeats")],
)
@pytest.mark.parametrize("loader", ["fit_csv", "load_dataset"])
def test_dates_out_of_order_or_repeated_are_refused_in_one_line(
    tmp_path: Path, case: str, phrase: str, loader: str
) -> None:
    dates = list(pd.date_range("2016-07-01", periods=400, freq="1h").strftime("%Y-%m-%d %H:%M:%S"))
    if case == "shuffled":
        dates[10], dates[11] = dates[11], dates[10]  # rows 10, 11: CSV lines 12, 13
    else:
        dates[11] = dates[10]
    path = _dated_csv(tmp_path / "bad.csv", 0, "1h", dates)
    section = DataSection(path=str(path), split="ratio", seq_len=24, label_len=12, pred_len=6)
    with pytest.raises(DataError) as caught:
        fit_csv(section) if loader == "fit_csv" else load_dataset(section)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and phrase in message
    assert "line 13" in message and "line 12" in message
    assert dates[11] in message and dates[10] in message
    assert "sort the file by date and remove duplicate timestamps" in message


@pytest.mark.parametrize(
    ("first", "second", "phrases"),
    [
        # an unparseable first date (pandas would also warn over several lines)
        ("soon", "2016-07-01 01:00:00", ["'soon'", "line 2", "YYYY-MM-DD HH:MM:SS"]),
        # offsets that change half-way, read in UTC: the second row is the third's instant
        ("2016-07-01 00:00:00+01:00", "2016-07-01 02:00:00+02:00", ["line 4", "repeats"]),
    ],
    ids=["text", "mixed-offsets"],
)
def test_unparseable_dates_are_one_data_error_without_warnings(
    tmp_path: Path, first: str, second: str, phrases: list[str]
) -> None:
    offset = second[19:]  # the rows after the second keep its offset (or none)
    rest = list(pd.date_range("2016-07-01 02:00", periods=398, freq="1h")
                .strftime("%Y-%m-%d %H:%M:%S" + offset))
    path = _dated_csv(tmp_path / "bad.csv", 0, "1h", [first, second, *rest])
    section = DataSection(path=str(path), split="ratio", seq_len=24, label_len=12, pred_len=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError) as caught:
            load_dataset(section)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for phrase in phrases:
        assert phrase in message


def test_offsets_that_change_at_daylight_saving_are_read_in_utc(tmp_path: Path) -> None:
    """Local times with their offset (+01:00 in winter, +02:00 in summer) are unambiguous
    instants; they were refused as "the dates mix time-zone offsets"."""
    winter = pd.date_range("2016-03-26 00:00", periods=26, freq="1h")  # to 01:00 on the 27th
    summer = pd.date_range("2016-03-27 03:00", periods=374, freq="1h")  # clocks went forward
    dates = [*winter.strftime("%Y-%m-%d %H:%M:%S+01:00"),
             *summer.strftime("%Y-%m-%d %H:%M:%S+02:00")]
    path = _dated_csv(tmp_path / "dst.csv", 0, "1h", dates)
    section = DataSection(path=str(path), split="ratio", seq_len=24, label_len=12, pred_len=6)
    raw = read_series(path, "OT")
    assert (np.diff(raw.dates.asi8) == np.diff(raw.dates.asi8)[0]).all()  # hourly, no gap
    assert str(raw.dates.tz) == "UTC"
    load_dataset(section)


@pytest.mark.parametrize(("row", "value"), [(100, 1e300), (9000, 1e20), (12000, 1e30)])
def test_values_too_large_for_float32_training_are_refused_in_one_line(
        tmp_path: Path, row: int, value: float) -> None:
    """In the train rows 1e300 zeroed the column; in val a run 'diverged'; in test it ended
    'ok' with no test MSE."""
    frame = pd.read_csv(bundled_csv_path())
    frame.loc[row, "OT"] = value
    path = tmp_path / "glitch.csv"
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no numpy overflow warning on the way
        with pytest.raises(DataError) as refused:
            load_dataset(DataSection(path=str(path)))
    message = str(refused.value)
    assert f"column 'OT' has the value {value:.6g} on line {row + 2}" in message
    assert "\n" not in message


def test_large_values_that_float32_holds_still_load(tmp_path: Path) -> None:
    frame = pd.read_csv(bundled_csv_path())
    frame.loc[13000, "OT"] = 1e14
    path = tmp_path / "spike.csv"
    frame.to_csv(path, index=False)
    assert len(load_dataset(DataSection(path=str(path))).test) == 2857


@pytest.mark.parametrize(("step", "rows", "freq", "fix"), [
    ("15min", 14_400, "h", "'t'"),  # ETTm with the default freq: trained on the hourly months
    ("1h", 57_600, "t", "'h'"),
])
def test_split_ett_refuses_a_freq_the_dates_contradict(
        tmp_path: Path, step: str, rows: int, freq: str, fix: str) -> None:
    path = _dated_csv(tmp_path / "series.csv", rows, step)
    with pytest.raises(DataError, match=f"rows are .* apart, but data.freq is '{freq}'.*"
                                        f"set data.freq to {fix}$"):
        load_dataset(DataSection(path=str(path), freq=freq))
    ratio = load_dataset(DataSection(path=str(path), freq=freq, split="ratio"))
    assert len(ratio.train) > 0  # the ratio split counts no months


@pytest.mark.parametrize(
    ("header", "row_suffix", "phrases"),
    [
        # a name written twice (pandas read the second 'OT' as a column 'OT.1')
        ("date,HUFL,HULL,OT,OT", ",1", ["column 'OT' appears twice"]),
        # a saved row index: an unnamed first column (read as a feature 'Unnamed: 0')
        (",date,HUFL,HULL,OT", None, ["column 1 of 5 has no name", "remove it"]),
        # rows with one field more than the header (pandas made the first a row index)
        ("date,HUFL,HULL,OT", ",1", ["more fields than the 4 names in the header"]),
    ],
    ids=["repeated-name", "unnamed-index", "extra-field"],
)
def test_a_header_pandas_would_rename_or_shift_is_refused_in_one_line(
    tmp_path: Path, synthetic_csv: Path, header: str, row_suffix: str | None,
    phrases: list[str],
) -> None:
    rows = synthetic_csv.read_text(encoding="utf-8").splitlines()[1:]
    if row_suffix is None:  # an index column, as DataFrame.to_csv(index=True) writes it
        rows = [f"{number},{row}" for number, row in enumerate(rows)]
    else:
        rows = [row + row_suffix for row in rows]
    path = _write(tmp_path / "own.csv", "\n".join([header, *rows]) + "\n")
    for check in (fit_csv, load_dataset):
        message = _one_line_refusal(check, path)
        for phrase in phrases:
            assert phrase in message


def test_a_column_named_like_a_pandas_rename_still_loads(
    tmp_path: Path, synthetic_csv: Path
) -> None:
    # 'OT.1' written in the header is a real name, not a renamed duplicate
    text = synthetic_csv.read_text(encoding="utf-8").replace("HULL", "OT.1", 1)
    path = _write(tmp_path / "own.csv", text)
    data = load_dataset(DataSection(path=str(path), split="ratio", seq_len=24, label_len=12,
                                    pred_len=6))
    assert data.columns == ("HUFL", "OT.1", "OT")


def _with_dates(tmp_path: Path, rows: int, date_format: str) -> Path:
    frame = pd.DataFrame({
        "date": pd.date_range("2016-07-01", periods=rows, freq="h").strftime(date_format),
        "OT": np.sin(np.arange(rows) / 4.0),
    })
    path = tmp_path / "own.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "date_format",
    # day first: 13/07/2016 on line 290 can only be the 13th (it was 'not a timestamp');
    # month first: 07/13/2016 can only be July 13 (as before)
    ["%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M"],
    ids=["day-first", "month-first"],
)
def test_numeric_dates_are_read_in_the_one_day_month_order_that_fits_every_row(
    tmp_path: Path, date_format: str
) -> None:
    path = _with_dates(tmp_path, 400, date_format)  # 1 to 17 July 2016
    series = read_series(path, "OT")
    assert series.dates[0] == pd.Timestamp("2016-07-01")
    assert series.dates[-1] == pd.Timestamp("2016-07-17 15:00")


@pytest.mark.parametrize("date_format", ["%d/%m/%Y %H:%M", "%d.%m.%Y %H:%M"],
                         ids=["slashes", "dots"])
def test_dates_that_read_both_day_and_month_first_are_refused_in_one_line(
    tmp_path: Path, date_format: str
) -> None:
    # 1 to 12 July 2016: every value is also a month-first date (7 January to 7 December),
    # which pandas took silently
    path = _with_dates(tmp_path, 288, date_format)
    with pytest.raises(DataError) as caught:
        fit_csv(DataSection(path=str(path), seq_len=24, label_len=12, pred_len=6))
    message = str(caught.value)
    assert "\n" not in message
    assert "day first or month first" in message
    assert "1 July 2016 or 7 January 2016" in message
    assert "YYYY-MM-DD" in message


def _with_columns(tmp_path: Path, **columns: np.ndarray) -> Path:
    rows = len(next(iter(columns.values())))
    dates = pd.date_range("2016-07-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "own.csv"
    pd.DataFrame({"date": dates, **columns}).to_csv(path, index=False)
    return path


WAVE = np.sin(np.arange(400) / 4.0)


@pytest.mark.parametrize(
    ("columns", "phrases"),
    [
        # a constant target: every score would be that of a constant forecast
        ({"HUFL": WAVE, "OT": np.full(400, 3.0)},
         ["target column 'OT' is constant (3)", "data.target"]),
        # constant over the train rows (lines 2-281), varying later: it reached the model
        # unscaled (std taken as 1) in the val and test rows
        ({"HULL": np.r_[np.zeros(280), np.arange(1.0, 121.0)], "OT": WAVE},
         ["column 'HULL' is constant (0)", "line 282: 1", "remove the column"]),
    ],
    ids=["constant-target", "constant-in-train-only"],
)
def test_a_column_the_train_rows_cannot_scale_is_refused_in_one_line(
    tmp_path: Path, columns: dict[str, np.ndarray], phrases: list[str]
) -> None:
    path = _with_columns(tmp_path, **columns)
    message = _one_line_refusal(load_dataset, path)
    for phrase in phrases:
        assert phrase in message


def test_a_column_constant_everywhere_loads_centred(tmp_path: Path) -> None:
    # a constant input is harmless: centred to 0 on every row, never divided by 0
    path = _with_columns(tmp_path, HULL=np.full(400, 7.0), OT=WAVE)
    data = load_dataset(DataSection(path=str(path), split="ratio", seq_len=24, label_len=12,
                                    pred_len=6))
    assert torch.equal(data.test.values[:, 0], torch.zeros(len(data.test.values)))


def test_too_few_rows_for_the_ratio_split_says_how_many_the_file_needs(
    csv_factory: Callable[..., Path],
) -> None:
    # seq_len 24 + pred_len 6 in each of the 70/10/20 % parts: 51 rows and more fit (the
    # message named only the part; 104 rows fitted seq_len 48 + pred_len 12, 105 did not)
    def load(rows: int) -> ETTData:
        path = csv_factory(rows=rows, name=f"rows{rows}.csv")
        return load_dataset(DataSection(path=str(path), split="ratio", seq_len=24,
                                        label_len=12, pred_len=6))

    for rows in (20, 50):
        with pytest.raises(DataError) as caught:
            load(rows)
        assert "use a file of at least 51 rows or a shorter data.seq_len" in str(caught.value)
    for rows in range(51, 71):
        assert len(load(rows).val) >= 1


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        # a boolean (or text) column: no row to fill, the column is the problem
        (np.where(np.arange(400) % 2 == 0, "True", "False"), "remove the column"),
        # a column empty on every row: the same
        (np.full(400, ""), "remove the column"),
        # thousands separators in quoted numbers ("1,234.5")
        ([f"{1000 + row:,}.5" for row in range(400)], "without thousands separators"),
        # decimal commas in quoted numbers ("0,25")
        ([f"{row % 9},25" for row in range(400)], "'.' as the decimal point"),
    ],
    ids=["booleans", "all-empty", "thousands-separators", "decimal-commas"],
)
def test_a_column_not_written_as_numbers_says_what_to_change(
    tmp_path: Path, values: list[str], phrase: str
) -> None:
    path = _with_columns(tmp_path, HULL=np.asarray(values, dtype=object), OT=WAVE)
    with pytest.raises(DataError) as caught:
        load_dataset(DataSection(path=str(path), split="ratio", seq_len=24, label_len=12,
                                 pred_len=6))
    message = str(caught.value)
    assert "\n" not in message and "column 'HULL'" in message
    assert phrase in message
    assert "fill or remove those rows" not in message  # every row is 'wrong' alike


def test_the_trainer_logs_a_warning_where_the_dates_jump(
    tmp_path: Path, synthetic_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a 30-day hole after line 201: windows across it join rows a month apart (no word)
    frame = pd.read_csv(synthetic_csv)
    dates = pd.to_datetime(frame["date"])
    frame["date"] = dates.where(dates.index < 200, dates + pd.Timedelta(days=30))
    path = tmp_path / "own.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level("WARNING", logger="informer_nas.informer.data"):
        load_dataset(DataSection(path=str(path), split="ratio", seq_len=24, label_len=12,
                                 pred_len=6))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "between lines 201 and 202" in warned[0]
    assert "721 hours" in warned[0]


@pytest.mark.parametrize(
    ("encoding", "phrase"),
    [
        # a Latin-1 'é' in a value on line 5: the byte and its line
        ("latin-1", "byte 0xe9 on line 5 is not UTF-8"),
        # a spreadsheet's 'Unicode text' export
        ("utf-16", "it is UTF-16 text"),
    ],
    ids=["latin-1", "utf-16"],
)
def test_a_file_not_in_utf8_says_where_and_to_save_it_as_utf8(
    tmp_path: Path, synthetic_csv: Path, encoding: str, phrase: str
) -> None:
    lines = synthetic_csv.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",é"
    path = tmp_path / "own.csv"
    path.write_bytes("\n".join(lines).encode(encoding))
    message = _one_line_refusal(load_dataset, path)
    assert phrase in message and "save the file as UTF-8" in message


@pytest.mark.parametrize(
    "name",
    # another case, or another name for the same timestamps: the column to rename is named
    ["Date", "timestamp"],
)
def test_timestamps_under_another_name_say_which_column_to_rename(
    tmp_path: Path, synthetic_csv: Path, name: str
) -> None:
    text = synthetic_csv.read_text(encoding="utf-8")
    path = _write(tmp_path / "own.csv", name + text[len("date"):])
    with pytest.raises(DataError) as caught:
        fit_csv(DataSection(path=str(path), seq_len=24, label_len=12, pred_len=6))
    message = str(caught.value)
    assert "\n" not in message
    assert f"rename column {name!r} to 'date'" in message


def test_values_are_the_numbers_written_in_every_number_format(tmp_path: Path) -> None:
    # the C reader's numbers equal Python's float() of the text, bit for bit, in each
    # spelling a CSV carries (value columns are parsed as numbers, not as text, since
    # a 44 MB file took 6 s and 730 MB to check)
    written = ["1", " 2.5 ", "1e-3", "-0.0", "123456789.123456789", '"4.25"', "0.1", "7"]
    rows = [f"2016-07-01 {hour:02d}:00:00,{value},{hour}" for hour, value in enumerate(written)]
    path = _write(tmp_path / "own.csv", "\n".join(["date,HUFL,OT", *rows]) + "\n")
    series = read_series(path, "OT")
    expected = [float(value.strip().strip('"')) for value in written]
    assert series.values[:, 0].tolist() == expected
    assert np.signbit(series.values[3, 0])


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["unix", "windows"])
def test_an_empty_line_between_rows_is_refused_and_empty_lines_at_the_end_are_not(
    tmp_path: Path, synthetic_csv: Path, newline: str
) -> None:
    lines = synthetic_csv.read_text(encoding="utf-8").splitlines()
    at_end = _write(tmp_path / "end.csv", newline.join(lines) + newline * 3)
    assert read_series(at_end, "OT").values.shape == (400, 3)
    # pandas skipped it, and every line a message named after it was one too small
    lines.insert(10, "")
    inside = _write(tmp_path / "inside.csv", newline.join(lines) + newline)
    with pytest.raises(DataError) as caught:
        read_series(inside, "OT")
    message = str(caught.value)
    assert "\n" not in message and "line 11 is empty, between data rows" in message


def test_dates_with_and_without_an_offset_name_the_date_without_one(tmp_path: Path) -> None:
    # every other date with +02:00: the others were called 'not a timestamp'
    dates = list(pd.date_range("2016-07-01", periods=400, freq="h").strftime("%Y-%m-%d %H:%M:%S"))
    dates[::2] = [f"{date}+02:00" for date in dates[::2]]
    path = tmp_path / "own.csv"
    pd.DataFrame({"date": dates, "OT": WAVE}).to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        read_series(path, "OT")
    message = str(caught.value)
    assert "\n" not in message
    assert "'2016-07-01 01:00:00' on line 3 has no UTC offset" in message
    assert "write every date with its offset" in message
