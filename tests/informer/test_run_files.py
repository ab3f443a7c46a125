"""learning_curve.png, checked through the function that builds its figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from informer_nas.informer import run_files
from informer_nas.informer.run_files import EpochRecord


def history(count: int) -> list[EpochRecord]:
    return [EpochRecord(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e, val_mse=1.1 / e,
                        val_mae=0.5, test_mse=1.2 / e, test_mae=0.6, lr=1e-3, seconds=0.1)
            for e in range(1, count + 1)]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 30], ids=lambda n: f"{n}-epochs")
def test_learning_curve_ticks_are_whole_epochs(count: int) -> None:
    axes = run_files.learning_curve_figure(history(count)).axes[0]
    low, high = axes.get_xlim()
    ticks = [float(t) for t in axes.get_xticks() if low - 1e-9 <= t <= high + 1e-9]
    assert ticks and all(t == int(t) for t in ticks), ticks


def test_learning_curve_png_is_written(tmp_path: Path) -> None:
    run_files.write_learning_curve(tmp_path / "learning_curve.png", history(1))
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
