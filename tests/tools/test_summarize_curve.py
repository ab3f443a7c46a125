"""summarize_curve: the pure curve summary and the tool over a workspace run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from informer_nas.errors import HistoryCorrupt, NasError
from informer_nas.nas_system.executor import CallableExecutor, TrainOutcome, TrainRequest
from informer_nas.nas_system.records import RunRecord, RunStatus, SeedResult
from informer_nas.nas_system.settings import SessionSettings
from informer_nas.nas_system.state import load_state
from informer_nas.nas_system.workspace import Workspace
from informer_nas.tools.context import ToolContext
from informer_nas.tools.summarize_curve import curve_summary, summarize_curve


@pytest.fixture
def tool_context(tmp_path: Path) -> ToolContext:
    def never(request: TrainRequest) -> TrainOutcome:
        return TrainOutcome(RunStatus.CRASHED, "not expected")

    workspace = Workspace.create(tmp_path / "ws", "tiny")
    return ToolContext(workspace, load_state(workspace.paths), SessionSettings(),
                       CallableExecutor(never))


def curve(train: list[float], val: list[float]) -> list[dict[str, Any]]:
    """History epochs; val_mse equals val_loss (an MSE criterion)."""
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v, "val_mse": v}
            for i, (t, v) in enumerate(zip(train, val, strict=True))]


def test_empty_history() -> None:
    summary = curve_summary([])
    assert summary.epochs_run == 0 and summary.best_epoch is None
    assert not (summary.is_overfitting or summary.is_plateau or summary.is_diverged)
    assert "No completed epoch" in summary.paragraph


def test_improving_curve() -> None:
    summary = curve_summary(curve([1.0, 0.8, 0.7, 0.6], [1.2, 1.0, 0.9, 0.85]))
    assert (summary.best_epoch, summary.epochs_run) == (4, 4)
    assert summary.best_val == summary.final_val == 0.85
    assert summary.train_val_gap == pytest.approx((0.85 - 0.6) / 0.6)
    assert not (summary.is_overfitting or summary.is_plateau or summary.is_diverged)
    assert "Still improving" in summary.paragraph


def test_overfitting_curve() -> None:
    summary = curve_summary(curve([1.0, 0.8, 0.6, 0.4, 0.3], [1.0, 0.9, 1.0, 1.1, 1.3]))
    assert summary.is_overfitting
    assert summary.best_epoch == 2 and summary.final_val == 1.3
    assert summary.gap_trend is not None and summary.gap_trend > 0  # widening gap
    assert "overfitting" in summary.paragraph


@pytest.mark.parametrize(
    ("val", "expected"),
    [
        ([1.0, 0.8, 0.7, 0.699, 0.698, 0.697], True),  # < 1 % gain over the last 3 epochs
        ([1.0, 0.8, 0.7, 0.68, 0.66, 0.64], False),  # still gaining > 1 %
        ([1.0, 0.8, 0.7], False),  # too short to call a plateau
    ],
    ids=["flat-tail", "gaining", "short"],
)
def test_plateau(val: list[float], expected: bool) -> None:
    train = [1.0 - 0.01 * i for i in range(len(val))]
    assert curve_summary(curve(train, val)).is_plateau is expected


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ([1.0, 0.5, 2.0], True),  # train loss blew up to 4x its minimum
        ([1.0, 0.5, float("nan")], True),  # non-finite loss
        ([1.0, 0.5, 0.6], False),  # a small bump is not divergence
    ],
    ids=["exploded", "nan", "bump"],
)
def test_divergence(train: list[float], expected: bool) -> None:
    assert curve_summary(curve(train, [1.0, 0.9, 0.95])).is_diverged is expected


def test_noise_is_std_of_relative_changes() -> None:
    val = [1.0, 1.1, 0.99, 1.089, 0.9801]  # +10 %, -10 %, +10 %, -10 %
    summary = curve_summary(curve([1.0, 0.9, 0.8, 0.7, 0.6], val))
    assert summary.noise == pytest.approx(0.1, rel=1e-6)


def test_null_values_are_tolerated() -> None:
    epochs = curve([1.0, 0.9], [1.0, 0.9]) + [
        {"epoch": 3, "train_loss": None, "val_loss": None, "val_mse": None}
    ]
    summary = curve_summary(epochs)
    assert summary.epochs_run == 3 and summary.best_epoch == 2 and summary.final_val is None
    json.dumps(summary.to_dict(), allow_nan=False)  # JSON-safe for the state file


def test_best_epoch_follows_val_mse_not_the_val_loss() -> None:
    # an L1 criterion: the val loss is lowest at epoch 3, the val MSE at epoch 2
    epochs = [{"epoch": e, "train_loss": 1.0, "val_loss": loss, "val_mse": mse}
              for e, loss, mse in ((1, 0.9, 1.0), (2, 0.8, 0.6), (3, 0.7, 0.8))]
    summary = curve_summary(epochs)
    assert (summary.best_epoch, summary.best_val) == (2, 0.6)


def test_falls_back_to_val_loss_without_val_mse() -> None:
    epochs = [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.5}]
    assert curve_summary(epochs).best_val == 0.5


def write_history(root: Path, run_id: str, epochs: list[dict[str, Any]] | str) -> None:
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    text = epochs if isinstance(epochs, str) else json.dumps({"epochs": epochs})
    (run_dir / "history.json").write_text(text)


def add_run(ctx: ToolContext, run_id: str, seeds: tuple[int, ...] = ()) -> RunRecord:
    """A finished run in the state, with confirmation seeds in ``seed_<n>/``."""
    record = RunRecord(run_id=run_id, iteration=len(ctx.state.runs) + 1, status=RunStatus.OK,
                       seeds=[SeedResult(seed=seed, status=RunStatus.OK,
                                         run_dir=f"runs/{run_id}/seed_{seed}") for seed in seeds])
    ctx.state.runs.append(record)
    return record


def test_tool_returns_json(tool_context: ToolContext) -> None:
    add_run(tool_context, "run_0000")
    write_history(tool_context.workspace.paths.root, "run_0000", curve([1.0, 0.5], [1.0, 0.8]))
    payload = json.loads(summarize_curve(tool_context, "run_0000"))
    assert payload["run_id"] == "run_0000" and payload["best_epoch"] == 2
    assert payload["paragraph"]


def test_tool_unknown_run_lists_known_ids(tool_context: ToolContext) -> None:
    tool_context.state.runs.append(RunRecord(run_id="run_0000", iteration=0))
    with pytest.raises(NasError, match=r"'run_0042'.*run_0000"):
        summarize_curve(tool_context, "run_0042")


@pytest.mark.parametrize("run_id", ["OUTSIDE", "..", "", ".", "runs/run_0000",
                                    "run_0000/..", "run_0000/seed_8", "run_0001", "run_0000/"],
                         ids=["absolute-path", "parent", "empty", "dot", "relative-path",
                              "escape", "unrecorded-seed", "directory-only",
                              "trailing-slash"])
def test_tool_accepts_only_run_ids_of_the_state(tool_context: ToolContext, tmp_path: Path,
                                                run_id: str) -> None:
    """A path (absolute, relative, '..', '') is an unknown run, never a file that is read;
    so is a directory of the workspace that the state does not know."""
    root = tool_context.workspace.paths.root
    add_run(tool_context, "run_0000", seeds=(7,))
    write_history(root, "run_0000", curve([1.0, 0.5], [1.0, 0.8]))
    for seed in (7, 8):
        write_history(root, f"run_0000/seed_{seed}", curve([1.0, 0.5], [1.0, 0.8]))
    write_history(root, "run_0001", curve([1.0, 0.5], [1.0, 0.8]))  # left by no record
    outside = tmp_path / "somewhere" / "fakerun"
    outside.mkdir(parents=True)
    (outside / "history.json").write_text(json.dumps({"epochs": curve([1.0], [2.0])}))
    asked = str(outside) if run_id == "OUTSIDE" else run_id
    with pytest.raises(NasError, match=r"unknown run .*known runs: run_0000, run_0000/seed_7"):
        summarize_curve(tool_context, asked)


def test_tool_unknown_run_lists_only_the_last_ids(tool_context: ToolContext) -> None:
    for number in range(25):
        add_run(tool_context, f"run_{number:04d}")
    with pytest.raises(NasError) as caught:
        summarize_curve(tool_context, "nope")
    message = str(caught.value)
    assert "the last 20 of 25" in message and "run_0024" in message
    assert "run_0004," not in message and "run_0005," in message


def test_tool_without_runs_says_none_was_launched(tool_context: ToolContext) -> None:
    with pytest.raises(NasError, match="unknown run '..': no run has been launched yet"):
        summarize_curve(tool_context, "..")


def test_tool_reads_a_confirmation_seed(tool_context: ToolContext) -> None:
    root = tool_context.workspace.paths.root
    add_run(tool_context, "run_0000", seeds=(7,))
    write_history(root, "run_0000", curve([1.0, 0.5], [1.0, 0.8]))
    write_history(root, "run_0000/seed_7", curve([1.0, 0.5, 0.4], [1.0, 0.8, 0.7]))
    payload = json.loads(summarize_curve(tool_context, "run_0000/seed_7"))
    assert payload["run_id"] == "run_0000/seed_7" and payload["epochs_run"] == 3


def test_tool_corrupt_history(tool_context: ToolContext) -> None:
    add_run(tool_context, "run_0000")
    write_history(tool_context.workspace.paths.root, "run_0000", "{torn")
    with pytest.raises(HistoryCorrupt, match="history.json"):
        summarize_curve(tool_context, "run_0000")


def test_tool_run_without_history(tool_context: ToolContext) -> None:
    add_run(tool_context, "run_0000")
    (tool_context.workspace.paths.root / "runs" / "run_0000").mkdir(parents=True)
    payload = json.loads(summarize_curve(tool_context, "run_0000"))
    assert payload["epochs_run"] == 0 and "no history.json" in payload["paragraph"]


def test_tool_recorded_run_without_a_directory(tool_context: ToolContext) -> None:
    """A run of the state that stopped before its directory was made has no history."""
    add_run(tool_context, "run_0000")
    payload = json.loads(summarize_curve(tool_context, "run_0000"))
    assert payload["epochs_run"] == 0 and "no history.json" in payload["paragraph"]


def test_tool_shows_the_curves_with_short_numbers(tool_context: ToolContext) -> None:
    """The model sees the curves the words are about (to pick epochs, patience, lr), and
    numbers of 4 digits, not 17."""
    add_run(tool_context, "run_0000")
    write_history(tool_context.workspace.paths.root, "run_0000",
                  curve([1.0, 0.8, 0.7], [1 / 3, 0.25, 0.2612345678]))
    payload = json.loads(summarize_curve(tool_context, "run_0000"))
    assert payload["val_by_epoch"] == [0.3333, 0.25, 0.2612]
    assert payload["train_loss_by_epoch"] == [1.0, 0.8, 0.7]
    assert payload["best_val"] == 0.25 and "curves_from_epoch" not in payload
    assert all(len(repr(v)) <= 8 for v in payload.values() if isinstance(v, float))


def test_tool_shows_only_the_last_epochs_of_a_long_curve(tool_context: ToolContext) -> None:
    add_run(tool_context, "run_0000")
    val = [1.0 / (epoch + 1) for epoch in range(30)]
    write_history(tool_context.workspace.paths.root, "run_0000", curve(val, val))
    payload = json.loads(summarize_curve(tool_context, "run_0000"))
    assert len(payload["val_by_epoch"]) == 20 and payload["curves_from_epoch"] == 11
    assert payload["val_by_epoch"][-1] == round(1 / 30, 5)
