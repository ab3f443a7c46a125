"""The trainer: the subprocess contract (files, JSON lines, exit codes, SIGTERM) and the
in-process loop (seeding, divergence, pruning, early stopping, schedules).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from informer_nas.informer.config import (
    InformerConfig,
    TrainingSection,
    load_config,
    read_config_literal,
)
from informer_nas.informer.optimizers import build_optimizer
from informer_nas.informer.presets import preset_config
from informer_nas.informer.run_files import EXIT_CODES, EpochRecord, config_used_text
from informer_nas.informer.train import BestSoFarPruner, prune_callback_from_env
from informer_nas.informer.trainer_setup import EpochScheduler
from informer_nas.informer.training import Trainer, TrainHooks
from informer_nas.nas_system.pruning import prune_decision
from informer_nas.nas_system.records import status_from_exit_code

RUN_FILES = {"config_used.py", "metrics.json", "history.json", "learning_curve.png",
             "best_model.pt", "train.log"}
METRIC_KEYS = {"status", "reason", "val_mse", "val_mae", "test_mse", "test_mae", "best_epoch",
               "epochs_run", "n_params", "train_seconds", "samples_per_second", "device", "seed"}
EPOCH_KEYS = {"epoch", "train_loss", "val_loss", "val_mse", "val_mae", "test_mse", "test_mae",
              "lr", "seconds"}
ConfigFileFactory = Callable[..., Path]


def _tiny(**training: Any) -> InformerConfig:
    config = preset_config("tiny").to_dict()
    config["training"].update(training)
    return InformerConfig.model_validate(config)


def _trainer_command(config: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "informer_nas.informer.train", "--config", str(config),
            "--run-dir", str(run_dir), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_trainer_exit_code_maps_back_to_its_status() -> None:
    # The launcher turns the child's exit status into the run's status: no status may be
    # lost or confused on the way (codes are distinct and known to the records).
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    for status, code in EXIT_CODES.items():
        assert status_from_exit_code(code).value == status
    assert status_from_exit_code(-9).value == "interrupted"


def test_subprocess_training_writes_every_run_file(
    tmp_path: Path, config_file_factory: ConfigFileFactory
) -> None:
    config = config_file_factory("tiny", training={"max_epochs": 2, "max_train_windows": 64,
                                                   "max_eval_windows": 64})
    run_dir = tmp_path / "run"
    done = subprocess.run(_trainer_command(config, run_dir, "--seed", "7"), env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES  # no temp files left behind
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 2
    assert {"step"} <= set(kinds)
    assert events[0]["run_dir"] == str(run_dir) and events[0]["seed"] == 7
    metrics = _read_json(run_dir / "metrics.json")
    assert set(metrics) == METRIC_KEYS
    assert metrics["status"] == "ok" and metrics["seed"] == 7 and metrics["epochs_run"] == 2
    assert {key: events[-1][key] for key in METRIC_KEYS} == metrics
    epochs = _read_json(run_dir / "history.json")["epochs"]
    assert [set(epoch) for epoch in epochs] == [EPOCH_KEYS, EPOCH_KEYS]
    assert load_config(run_dir / "config_used.py").training.seed == 7
    assert "# test config" in (run_dir / "config_used.py").read_text(encoding="utf-8")
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert set(torch.load(run_dir / "best_model.pt")) == set(
        Trainer(load_config(config)).model.state_dict()
    )
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "epoch 2" in log
    assert "native CPU kernels: " in log  # loaded from where, or why not


def test_invalid_config_exits_2_without_training(
    tmp_path: Path, config_file_factory: ConfigFileFactory
) -> None:
    config = config_file_factory("tiny", model={"d_model": 10, "n_heads": 3})
    run_dir = tmp_path / "run"
    done = subprocess.run(_trainer_command(config, run_dir), env=_env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    failed = json.loads(done.stdout.splitlines()[-1])
    assert failed["event"] == "failed" and failed["status"] == "invalid_config"
    assert "divisible" in failed["reason"]
    metrics = _read_json(run_dir / "metrics.json")
    assert metrics["status"] == "invalid_config" and metrics["epochs_run"] == 0
    assert _read_json(run_dir / "history.json") == {"epochs": []}
    assert not (run_dir / "best_model.pt").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_stops_cleanly_and_keeps_the_history(
    tmp_path: Path, config_file_factory: ConfigFileFactory, signum: signal.Signals
) -> None:
    """SIGHUP too: a session whose terminal was closed forwards it (the trainer died of it,
    or got SIGTERM and its records said SIGTERM)."""
    config = config_file_factory(
        "tiny", training={"max_epochs": 6, "patience": 6, "max_train_windows": 400,
                          "max_eval_windows": 32},
        data={"batch_size": 8},
    )
    run_dir = tmp_path / "run"
    process = subprocess.Popen(_trainer_command(config, run_dir), env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    try:
        for line in process.stdout:  # wait for a step of the second epoch
            event = json.loads(line)
            if event["event"] == "step" and event["epoch"] == 2:
                process.send_signal(signum)
                break
        rest = process.stdout.read()
        code = process.wait(timeout=60)
    finally:
        process.kill()
    assert code == 130
    assert json.loads(rest.splitlines()[-1])["status"] == "interrupted"
    metrics = _read_json(run_dir / "metrics.json")
    assert metrics["status"] == "interrupted" and signum.name in metrics["reason"]
    assert 1 <= metrics["epochs_run"] < 6 and metrics["val_mse"] is not None
    assert len(_read_json(run_dir / "history.json")["epochs"]) == metrics["epochs_run"]
    assert (run_dir / "learning_curve.png").exists() and (run_dir / "best_model.pt").exists()


def test_same_seed_gives_the_same_numbers() -> None:
    first = Trainer(_tiny(max_epochs=1, max_train_windows=96, max_eval_windows=64)).fit()
    second = Trainer(_tiny(max_epochs=1, max_train_windows=96, max_eval_windows=64)).fit()
    other = Trainer(_tiny(max_epochs=1, max_train_windows=96, max_eval_windows=64,
                          seed=5)).fit()
    assert first.status == "ok"
    assert first.history[0].train_loss == second.history[0].train_loss
    assert (first.val, first.test) == (second.val, second.test)
    assert other.history[0].train_loss != first.history[0].train_loss


class _LastValue(torch.nn.Module):
    """Forecasts each channel's last value times a learned gain (Informer's call signature)."""

    def __init__(self, pred_len: int) -> None:
        super().__init__()
        self.pred_len = pred_len
        self.gain = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_enc: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return (x_enc[:, -1:] * self.gain).expand(-1, self.pred_len, -1)


def test_trainer_trains_and_scores_another_model_the_same_way() -> None:
    config = _tiny(max_epochs=3, max_train_windows=256, max_eval_windows=64,
                   optimizer_params={"lr": 0.05}, scheduler_class="none")
    model = _LastValue(config.data.pred_len)
    trainer = Trainer(config, model=model)
    result = trainer.fit()
    assert trainer.model is model and result.n_params == 1
    assert result.status == "ok" and model.gain.item() > 0.1  # learnt from zero
    # early stopping and the reloaded best checkpoint work as for Informer
    assert result.best_epoch == min(result.history, key=lambda r: r.val_mse).epoch
    assert result.val is not None and result.val.mse == pytest.approx(
        min(r.val_mse for r in result.history))


def test_nan_loss_stops_at_once_as_diverged() -> None:
    trainer = Trainer(_tiny(max_train_windows=64, max_eval_windows=32))
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(math.nan)
    result = trainer.fit()
    assert result.status == "diverged" and result.exit_code == 3
    assert result.history == [] and result.samples_per_second is None
    assert "nan" in result.reason and result.metrics()["val_mse"] is None


def test_epoch_callback_prunes_the_run() -> None:
    seen: list[tuple[int, float]] = []

    def prune(epoch: int, val_mse: float) -> bool:
        seen.append((epoch, val_mse))
        return True

    result = Trainer(_tiny(max_train_windows=64, max_eval_windows=32, max_epochs=2),
                     hooks=TrainHooks(epoch_callback=prune)).fit()
    assert result.status == "pruned" and result.exit_code == 5
    assert result.reason == "pruned after epoch 1"  # a str return would be the reason
    assert len(result.history) == 1 and seen == [(1, result.history[0].val_mse)]


def test_the_last_epoch_is_never_pruned() -> None:
    """Pruning a run at its last epoch saves nothing: the finished run is judged instead
    (a run of max_epochs 2 was rejected as pruned at epoch 2)."""
    seen: list[int] = []

    def prune(epoch: int, val_mse: float) -> bool:
        seen.append(epoch)
        return True

    result = Trainer(_tiny(max_train_windows=64, max_eval_windows=32, max_epochs=1),
                     hooks=TrainHooks(epoch_callback=prune)).fit()
    assert result.status == "ok" and seen == []


def test_should_stop_interrupts_after_the_current_step() -> None:
    steps: list[dict[str, Any]] = []
    hooks = TrainHooks(on_event=steps.append, should_stop=lambda: True)
    result = Trainer(_tiny(max_train_windows=256, max_eval_windows=32), hooks=hooks).fit()
    assert result.status == "interrupted" and result.exit_code == 130
    assert [e["step"] for e in steps if e["event"] == "step"] == [1]


def test_prune_file_compares_the_best_val_mse_so_far(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prune_file = tmp_path / "prune.json"
    prune_file.write_text(json.dumps({"epoch_thresholds": {"2": 0.5, "3": 0.5}}), encoding="utf-8")
    monkeypatch.setenv("NAS_PRUNE_FILE", str(prune_file))
    recovered = prune_callback_from_env()
    assert recovered is not None
    # epoch 2 is above its threshold, but epoch 1 already did better: not pruned
    assert recovered(1, 0.4) is None and recovered(2, 0.6) is None and recovered(3, 0.7) is None
    hopeless = prune_callback_from_env()
    assert hopeless is not None and hopeless(1, 0.6) is None  # no threshold at epoch 1
    assert hopeless(2, 0.55) == "pruned at epoch 2: best val_mse so far 0.55 > threshold 0.5"
    prune_file.write_text("not json", encoding="utf-8")  # unreadable: never prunes
    unreadable = prune_callback_from_env()
    assert unreadable is not None and unreadable(2, 0.9) is None


@pytest.mark.parametrize("curve", [
    [0.4, 0.7, 0.48], [0.9, 0.8, 0.7], [0.7, 0.55, 0.45], [math.nan, 0.6, 0.3],
    [math.nan, math.nan, 0.1], [0.3, math.inf, 0.9], [0.6, 0.6, 0.5],
])
def test_pruner_agrees_with_the_planned_rule(curve: list[float]) -> None:
    thresholds = {2: 0.6, 3: 0.5}
    expected = prune_decision(dict(enumerate(curve, start=1)), thresholds)
    pruner = BestSoFarPruner(lambda: {str(e): t for e, t in thresholds.items()})
    reasons = [pruner(epoch, value) for epoch, value in enumerate(curve, start=1)]
    pruned_at = next((e for e, r in enumerate(reasons, start=1) if r is not None), None)
    assert pruned_at == (expected.epoch if expected else None)


def test_pruned_run_explains_itself_in_metrics(
    tmp_path: Path, config_file_factory: ConfigFileFactory
) -> None:
    config = config_file_factory("tiny", training={"max_epochs": 3, "max_train_windows": 32,
                                                   "max_eval_windows": 32})
    prune_file = tmp_path / "prune.json"
    prune_file.write_text(json.dumps({"epoch_thresholds": {"1": 1e-9}}), encoding="utf-8")
    run_dir = tmp_path / "run"
    done = subprocess.run(_trainer_command(config, run_dir),
                          env={**_env(), "NAS_PRUNE_FILE": str(prune_file)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_CODES["pruned"], done.stderr
    metrics = _read_json(run_dir / "metrics.json")
    epochs = _read_json(run_dir / "history.json")["epochs"]
    assert metrics["status"] == "pruned" and metrics["epochs_run"] == len(epochs) == 1
    assert metrics["reason"] == (f"pruned at epoch 1: best val_mse so far "
                                 f"{epochs[0]['val_mse']:.6g} > threshold 1e-09")
    assert json.loads(done.stdout.splitlines()[-1])["reason"] == metrics["reason"]


class ScriptedTrainer(Trainer):
    """Replays given val MSEs instead of training (to test the loop's decisions).

    The val loss (the training criterion on the val split) is ``val_losses`` when given,
    else the val MSE (an MSE criterion).
    """

    def __init__(self, config: InformerConfig, val_mses: list[float],
                 val_losses: list[float] | None = None) -> None:
        super().__init__(config)
        self.val_mses = val_mses
        self.val_losses = val_losses or val_mses

    def run_epoch(self, epoch: int) -> EpochRecord:
        mse, loss = self.val_mses[epoch - 1], self.val_losses[epoch - 1]
        return EpochRecord(epoch, 1.0, loss, mse, mse, mse, mse, self.scheduler.lr, 0.0)


@pytest.mark.parametrize(
    ("val_losses", "patience", "epochs_run", "best_epoch"),
    [
        # a tie is no improvement: two equal epochs after the best exhaust patience 2
        ([1.0, 1.0, 1.0, 0.5], 2, 3, 1),
        # an improvement resets the patience counter
        ([1.0, 1.1, 0.9, 1.0, 1.0], 2, 5, 3),
    ],
    ids=["tie", "reset"],
)
def test_early_stopping(
    val_losses: list[float], patience: int, epochs_run: int, best_epoch: int
) -> None:
    config = _tiny(max_epochs=len(val_losses), patience=patience, max_train_windows=8,
                   max_eval_windows=8)
    result = ScriptedTrainer(config, val_losses).fit()
    assert result.status == "ok"
    assert (len(result.history), result.best_epoch) == (epochs_run, best_epoch)


def test_early_stopping_and_checkpoint_follow_val_mse_not_the_criterion() -> None:
    # An L1 criterion: the val loss keeps improving while the val MSE is best at epoch 2.
    # Patience 2 stops after epoch 4 of 5; epoch 2's weights are the ones kept.
    config = _tiny(max_epochs=5, patience=2, max_train_windows=8, max_eval_windows=8)
    result = ScriptedTrainer(config, val_mses=[1.0, 0.5, 0.6, 0.7, 0.8],
                             val_losses=[1.0, 0.9, 0.8, 0.7, 0.6]).fit()
    assert (len(result.history), result.best_epoch) == (4, 2)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        # the reference's type1: epochs 1 and 2 at lr0, then halved every epoch
        ("type1", [1.0, 1.0, 0.5, 0.25]),
        # StepLR with step_size 2, gamma 0.5
        ("StepLR", [1.0, 1.0, 0.5, 0.5]),
        ("none", [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_learning_rate_schedules(scheduler: str, expected: list[float]) -> None:
    training = TrainingSection.model_validate(
        {"scheduler_class": scheduler, "optimizer_params": {"lr": 1.0}, "max_epochs": 4})
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], training)
    schedule = EpochScheduler(optimizer, training)
    rates = []
    for epoch in range(1, 5):
        rates.append(schedule.lr)
        schedule.step(epoch)
    assert rates == pytest.approx(expected)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "RMSprop"])
def test_optimizers_get_momentum_only_where_it_exists(name: str) -> None:
    training = TrainingSection.model_validate(
        {"optimizer_class": name, "optimizer_params": {"lr": 0.1, "momentum": 0.9}})
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], training)
    assert ("momentum" in optimizer.defaults) == (name in ("SGD", "RMSprop"))


@pytest.mark.parametrize(
    "source",
    [
        'CONFIG = {"training": {"seed": 1}}  # keep me\n',
        "# defaults only\nCONFIG = {}\n",
        # the only seed entry is a comment: rewriting it, or keeping it when it names the
        # seed used, recorded the default seed 2021 instead
        '# "seed": 3 was tried\nCONFIG = {}\n',
        '# "seed": 42 is used\nCONFIG = {}\n',
    ],
    ids=["rewrite", "render", "comment", "comment-same"],
)
def test_config_used_records_the_seed(tmp_path: Path, source: str) -> None:
    config = _tiny(seed=42)
    path = tmp_path / "config_used.py"
    path.write_text(config_used_text(source, config), encoding="utf-8")
    assert load_config(path).training.seed == 42


@pytest.mark.parametrize("training_section", ["inline", "absent"])
def test_config_used_keeps_the_file_as_written_with_the_seed_set(tmp_path: Path,
                                                                   training_section: str) -> None:
    # a file without a seed entry: the seed is inserted, every other line stays as written
    values = _tiny().to_dict()
    training = values.pop("training")
    del training["seed"]
    lines = [f"    {key!r}: {value!r},  # {key} as tuned" for key, value in values.items()]
    if training_section == "inline":
        lines.append(f"    'training': {training!r},")
    else:
        training = {}
    source = "# my experiment\nCONFIG = {\n" + "\n".join(lines) + "\n}\n"
    config = InformerConfig.model_validate({**values, "training": {**training, "seed": 42}})
    text = config_used_text(source, config)
    unchanged = lines[:-1] if training_section == "inline" else lines  # all but training's
    for line in unchanged:
        assert line in text.splitlines()
    assert text.startswith("# my experiment\nCONFIG = {\n")
    path = tmp_path / "config_used.py"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == config


def test_config_used_keeps_every_value_when_written_out_in_full(tmp_path: Path) -> None:
    # two seeds in the source: the validated config is written out as a Python literal
    source = '# "seed": 1\nCONFIG = {"training": {"seed": 1}}\n'
    values = _tiny(seed=7).to_dict()
    values["data"]["path"] = str(tmp_path / "true null false.csv")
    config = InformerConfig.model_validate(values)
    path = tmp_path / "config_used.py"
    path.write_text(config_used_text(source, config), encoding="utf-8")
    assert read_config_literal(path) == config.to_dict()


def test_data_with_unordered_dates_exits_2_as_invalid_config(
    tmp_path: Path, config_file_factory: ConfigFileFactory
) -> None:
    """A hand-edited data.path to a shuffled file is refused before training, in one line."""
    lines = ["date,HUFL,OT"] + [f"2016-07-{1 + r // 24:02d} {r % 24:02d}:00:00,{r % 7},{r % 5}"
                                for r in range(400)]
    lines[21], lines[22] = lines[22], lines[21]
    csv = tmp_path / "shuffled.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = config_file_factory("tiny", data={"path": str(csv), "split": "ratio"})
    done = subprocess.run(_trainer_command(config, tmp_path / "run"), env=_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    failed = json.loads(done.stdout.splitlines()[-1])
    assert failed["status"] == "invalid_config" and str(csv) in failed["reason"]
    assert "line 22" in failed["reason"] and "sort the file by date" in failed["reason"]


_FAULTS_AFTER_A_CPU_TRAINER = """
import ctypes, resource, sys, torch
from informer_nas.informer.config import InformerConfig
from informer_nas.informer.presets import preset_config
from informer_nas.informer.training import Trainer
if sys.argv[1] == "trainer":
    config = preset_config("tiny").to_dict()
    config["training"].update(device="cpu", max_train_windows=32, max_eval_windows=32)
    Trainer(InformerConfig.model_validate(config))
else:  # glibc's starting thresholds, pinned: its own later moves depend on the address layout
    ctypes.CDLL(None).mallopt(-3, 128 * 1024) and ctypes.CDLL(None).mallopt(-1, 128 * 1024)

def one_step():  # a step's activations: blocks of 1-24 MB, about 100 MB held at once
    held = [torch.ones(mb * 2**18) for mb in (1, 2, 4, 8, 16, 24, 24, 16, 4)]
    del held

for _ in range(3):  # the heap grows to the step's size
    one_step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    one_step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_cpu_trainer_reuses_freed_memory_instead_of_faulting_in_fresh_pages() -> None:
    def faults_per_step(mode: str) -> int:
        result = subprocess.run([sys.executable, "-c", _FAULTS_AFTER_A_CPU_TRAINER, mode],
                                capture_output=True, text=True, env=_env(), check=True)
        return int(result.stdout.split()[-1])

    pages_per_step = 99 * 2**20 // 4096
    plain, trainer = faults_per_step("plain"), faults_per_step("trainer")
    assert plain > pages_per_step // 2, plain  # fresh pages each step, each faulted in
    assert trainer < pages_per_step // 50, trainer


def test_the_same_weights_always_get_the_same_score() -> None:
    """ProbSparse samples keys at evaluation too: a best checkpoint reloaded and scored
    again scored other numbers than its epoch had (1.5635 against 1.5200 in history)."""
    trainer = Trainer(_tiny(max_train_windows=32, max_eval_windows=64))
    assert trainer.config.model.attn == "prob"
    first = trainer.evaluate(trainer.data.val)
    stream = torch.get_rng_state()
    assert trainer.evaluate(trainer.data.val) == first
    assert torch.equal(torch.get_rng_state(), stream)  # the training's draws are untouched


def test_a_reloaded_best_checkpoint_scores_what_its_epoch_did() -> None:
    trainer = Trainer(_tiny(max_epochs=2, patience=5, max_train_windows=64,
                            max_eval_windows=64))
    result = trainer.fit()
    best = min(result.history, key=lambda epoch: epoch.val_mse)
    assert trainer.best_state is not None
    trainer.model.load_state_dict(trainer.best_state)
    assert trainer.evaluate(trainer.data.val).mse == best.val_mse == result.val.mse
    assert trainer.evaluate(trainer.data.test).mse == best.test_mse == result.test.mse


def test_a_run_dir_reused_for_a_failing_config_keeps_nothing_of_the_earlier_run(
        tmp_path: Path, config_file_factory: ConfigFileFactory) -> None:
    """The reason also reaches train.log and stderr (train.log was empty for data errors)."""
    run_dir = tmp_path / "run"
    good = config_file_factory("tiny", training={"max_epochs": 1, "max_train_windows": 32,
                                                 "max_eval_windows": 32})
    first = subprocess.run(_trainer_command(good, run_dir), env=_env(), capture_output=True,
                           text=True, timeout=120, check=False)
    assert first.returncode == 0 and (run_dir / "best_model.pt").exists()
    missing = tmp_path / "no-such.csv"
    bad = config_file_factory("tiny", name="bad.py", data={"path": str(missing)},
                              training={"max_train_windows": 32, "max_eval_windows": 32})
    second = subprocess.run(_trainer_command(bad, run_dir), env=_env(), capture_output=True,
                            text=True, timeout=120, check=False)
    assert second.returncode == EXIT_CODES["invalid_config"]
    assert {p.name for p in run_dir.iterdir()} == {"config_used.py", "metrics.json",
                                                   "history.json", "train.log"}
    assert _read_json(run_dir / "history.json")["epochs"] == []
    assert str(missing) in (run_dir / "train.log").read_text(encoding="utf-8")
    assert str(missing) in second.stderr


def test_a_second_training_into_a_run_dir_in_use_is_refused(
        tmp_path: Path, config_file_factory: ConfigFileFactory) -> None:
    """Two `nas train` into one --run-dir both said "ok" and left one run's metrics beside
    the other's config and history; the second now leaves the first's files alone."""
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"status": "ok"}')  # the first training's
    held = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first trainer holds it
        done = subprocess.run(_trainer_command(config_file_factory("tiny"), run_dir),
                              env=_env(), capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        os.close(held)
    assert done.returncode == EXIT_CODES["invalid_config"]
    assert done.stderr == (f"error: run directory {run_dir} is in use by another training; "
                           "wait for it to finish, or pass --run-dir a new directory\n")
    assert (run_dir / "metrics.json").read_text() == '{"status": "ok"}'


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path: Path,
                                              config_file_factory: ConfigFileFactory) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    config = config_file_factory("tiny")
    for run_dir in (taken, taken / "run"):
        done = subprocess.run(_trainer_command(config, run_dir), env=_env(),
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == EXIT_CODES["invalid_config"]
        assert done.stderr.startswith(f"error: run directory {run_dir} cannot be used")
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert taken.read_text() == "not a directory"
