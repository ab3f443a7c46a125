"""Fixtures shared by the whole suite: tiny synthetic series and config files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

CsvFactory = Callable[..., Path]
ConfigFileFactory = Callable[..., Path]


def synthetic_frame(rows: int = 400, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """A series with a ``date`` column and columns HUFL, HULL, OT (target last).

    Daily cycles plus noise, so a model can learn something; ``freq`` is ``h`` (hourly)
    or ``t`` (15 minutes).
    """
    step = "1h" if freq == "h" else "15min"
    dates = pd.date_range("2016-07-01", periods=rows, freq=step)
    rng = np.random.default_rng(seed)
    phase = np.arange(rows) * (2 * np.pi / (24 if freq == "h" else 96))
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d %H:%M:%S")})
    for index, name in enumerate(("HUFL", "HULL", "OT")):
        frame[name] = 5 + (index + 1) * np.sin(phase + index) + rng.normal(0, 0.1, rows)
    return frame


@pytest.fixture
def csv_factory(tmp_path: Path) -> CsvFactory:
    """Write a synthetic CSV: ``csv_factory(rows=400, freq="h", name="series.csv")``."""

    def make(rows: int = 400, freq: str = "h", name: str = "series.csv", seed: int = 0) -> Path:
        path = tmp_path / name
        synthetic_frame(rows, freq, seed).to_csv(path, index=False, float_format="%.5f")
        return path

    return make


@pytest.fixture
def synthetic_csv(csv_factory: CsvFactory) -> Path:
    """A 400-row hourly synthetic CSV (use ``data.split = "ratio"`` with it)."""
    return csv_factory()


@pytest.fixture
def config_file_factory(tmp_path: Path) -> ConfigFileFactory:
    """Write ``CONFIG = {...}`` for a preset with overrides, e.g.
    ``config_file_factory("tiny", training={"max_epochs": 1})``.
    """

    def make(preset: str = "tiny", name: str = "config.py", **sections: dict[str, Any]) -> Path:
        from informer_nas.informer.presets import preset_config

        config = preset_config(preset).to_dict()
        for section, values in sections.items():
            config[section].update(values)
        path = tmp_path / name
        path.write_text(f"# test config\nCONFIG = {config!r}\n", encoding="utf-8")
        return path

    return make
