"""A stand-in for ``python -m informer_nas.informer.train`` with the same contract, no torch.

``python fake_trainer.py --config PATH --run-dir DIR [--seed N]`` reads ``CONFIG`` by
literal evaluation, prints the trainer's JSON-line events (start, step, epoch, done or
failed), writes ``config_used.py`` (seed applied as the real trainer does),
``history.json`` after every epoch and ``metrics.json`` at the end, each atomically, and
exits with the trainer's exit codes. Metrics are a deterministic function of the config
and the seed. Each epoch sleeps ``FAKE_TRAINER_EPOCH_S`` seconds (default 0.1) so that a
kill lands mid-training. SIGTERM/SIGINT stop it after the current step (status
interrupted, exit 130), like the real trainer.

Faults (``FAKE_TRAINER_FAULTS="run_0001=nan,run_0003=oom"``, keyed by the name of the run
directory, or ``*`` for every run):

- ``nan``: the training loss becomes NaN in epoch 2 (status diverged, exit 3);
- ``exception``: a RuntimeError in epoch 1, caught (status crashed, exit 1);
- ``raise``: an uncaught exception before any file is written (exit 1, traceback only);
- ``oom``: an out-of-memory error in epoch 1 (status oom, exit 4);
- ``hang``: sleeps until signalled (for timeouts), then stops as interrupted;
- ``hang_hard``: sleeps and ignores SIGTERM (only SIGKILL ends it);
- ``sigterm``: sends itself SIGTERM during epoch 1;
- ``nometrics``: trains, then exits 0 without writing ``metrics.json``.

``FAKE_TRAINER_PID_DIR``: each trainer writes ``<pid>`` there (an empty file), so a test
can find and stop the trainers it started. Standard library only: it starts in ~50 ms.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_CODES = {"ok": 0, "crashed": 1, "invalid_config": 2, "diverged": 3, "oom": 4,
              "pruned": 5, "interrupted": 130}
SEED_PATTERN = re.compile(r"""(["']seed["']\s*:\s*)(\d+)""")
STOP: dict[str, str | None] = {"signal": None}


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same directory, fsync, rename."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def read_config(path: Path) -> dict[str, Any]:
    """``CONFIG`` of a config file, by literal evaluation only."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONFIG":
            value = ast.literal_eval(node.value)
            if isinstance(value, dict):
                return value
    raise ValueError(f"{path}: no CONFIG = {{...}}")


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config."""
    result: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            result.update(flat(value, f"{prefix}{key}."))
        else:
            result[f"{prefix}{key}"] = value
    return result


def val_mse_of(config: dict[str, Any], seed: int) -> float:
    """A deterministic val MSE: smooth in lr and dropout, plus a small seed effect."""
    values = flat(config)
    lr = float(values.get("training.optimizer_params.lr", 1e-3))
    value = 0.5 + 0.05 * abs(math.log10(lr) + 3.0) + 0.1 * float(values.get("model.dropout", 0))
    value += 0.01 * int(values.get("model.e_layers", 1))
    value += 0.001 * int(values.get("model.d_model", 16)) / 16
    noise = int(hashlib.sha256(str(seed).encode()).hexdigest()[:6], 16) / 16**6
    return round(value + 0.002 * noise, 9)


def config_used(source: str, seed: int) -> str:
    """The config text with ``training.seed`` set to ``seed`` (as the real trainer writes)."""
    matches = SEED_PATTERN.findall(source)
    if len(matches) == 1:
        return SEED_PATTERN.sub(lambda m: f"{m.group(1)}{seed}", source)
    return source


def fault_for(run_dir: Path) -> str:
    """The fault configured for this run directory ("" for none)."""
    faults = dict(item.split("=", 1) for item in
                  os.environ.get("FAKE_TRAINER_FAULTS", "").split(",") if "=" in item)
    return faults.get(run_dir.name, faults.get("*", ""))


def emit(event: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the parent died: keep going, as the real one
        pass


def on_signal(signum: int, frame: object) -> None:
    STOP["signal"] = signal.Signals(signum).name


def metrics_of(status: str, reason: str, seed: int, epochs: list[dict[str, Any]],
               seconds: float) -> dict[str, Any]:
    finite = [e for e in epochs if math.isfinite(e["val_mse"])]
    best = min(finite, key=lambda e: e["val_mse"]) if finite and status == "ok" else None
    pick = (lambda key: best[key]) if best else (lambda key: None)
    return {"status": status, "reason": reason, "val_mse": pick("val_mse"),
            "val_mae": pick("val_mae"), "test_mse": pick("test_mse"),
            "test_mae": pick("test_mae"), "best_epoch": best["epoch"] if best else None,
            "epochs_run": len(epochs), "n_params": 1234, "train_seconds": round(seconds, 4),
            "samples_per_second": 1000.0, "device": "cpu", "seed": seed}


def epoch_record(epoch: int, val: float, lr: float, seconds: float) -> dict[str, Any]:
    val_e = round(val * (1.0 + 0.2 / epoch), 9)
    return {"epoch": epoch, "train_loss": round(val_e * 1.1, 9), "val_loss": val_e,
            "val_mse": val_e, "val_mae": round(val_e * 0.8, 9), "test_mse": round(val_e * 1.05, 9),
            "test_mae": round(val_e * 0.85, 9), "lr": lr, "seconds": seconds}


def sleep_checking(seconds: float) -> None:
    """Sleep in small steps, returning early when a stop was requested."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and STOP["signal"] is None:
        time.sleep(min(0.02, max(0.0, end - time.monotonic())))


def train(config: dict[str, Any], seed: int, run_dir: Path,
          fault: str) -> tuple[str, str, list[dict[str, Any]]]:
    """The epoch loop; returns (status, reason, epochs)."""
    values = flat(config)
    max_epochs = int(values.get("training.max_epochs", 2))
    lr = float(values.get("training.optimizer_params.lr", 1e-3))
    epoch_s = float(os.environ.get("FAKE_TRAINER_EPOCH_S", "0.1"))
    val = val_mse_of(config, seed)
    epochs: list[dict[str, Any]] = []
    for epoch in range(1, max_epochs + 1):
        if fault == "sigterm" and epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        if fault in ("hang", "hang_hard"):
            while STOP["signal"] is None or fault == "hang_hard":
                time.sleep(0.02)
        if fault == "exception" and epoch == 1:
            return "crashed", "RuntimeError: injected failure in the data loader", epochs
        if fault == "oom" and epoch == 1:
            return "oom", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", epochs
        for step in (1, 2):
            sleep_checking(epoch_s / 2)
            # at epoch 2, or at the only one (the sampled max_epochs may be 1)
            loss = math.nan if fault == "nan" and epoch == min(2, max_epochs) else val * 1.1
            emit({"event": "step", "epoch": epoch, "step": step, "steps": 2,
                  "loss": None if math.isnan(loss) else loss})
            if math.isnan(loss):
                return "diverged", f"training loss became nan at step {step}", epochs
            if STOP["signal"] is not None:
                return "interrupted", f"stopped by {STOP['signal']}", epochs
        epochs.append(epoch_record(epoch, val, lr, epoch_s))
        atomic_write(run_dir / "history.json", json.dumps({"epochs": epochs}))
        emit({"event": "epoch", "epoch": epoch, "max_epochs": max_epochs,
              **{k: epochs[-1][k] for k in ("train_loss", "val_loss", "val_mse", "test_mse",
                                            "lr", "seconds")}})
    return "ok", "", epochs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_dir = os.environ.get("FAKE_TRAINER_PID_DIR")
    if pid_dir:
        Path(pid_dir, str(os.getpid())).touch()
    fault = fault_for(run_dir)
    if fault == "raise":
        raise RuntimeError("injected uncaught failure before any file was written")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # as the real trainer: a stop request
    signal.signal(signal.SIGTERM, signal.SIG_IGN if fault == "hang_hard" else on_signal)
    source = args.config.read_text(encoding="utf-8")
    config = read_config(args.config)
    seed = args.seed if args.seed is not None else int(flat(config).get("training.seed", 0))
    atomic_write(run_dir / "config_used.py", config_used(source, seed))
    emit({"event": "start", "run_dir": str(run_dir), "n_params": 1234, "device": "cpu",
          "max_epochs": int(flat(config).get("training.max_epochs", 2)), "steps_per_epoch": 2,
          "seed": seed})
    started = time.monotonic()
    status, reason, epochs = train(config, seed, run_dir, fault)
    atomic_write(run_dir / "history.json", json.dumps({"epochs": epochs}))
    metrics = metrics_of(status, reason, seed, epochs, time.monotonic() - started)
    if fault == "nometrics":
        return 0
    atomic_write(run_dir / "metrics.json", json.dumps(metrics))
    if status == "ok":
        emit({"event": "done", **metrics})
    else:
        emit({"event": "failed", "status": status, "reason": reason})
    return EXIT_CODES[status]


if __name__ == "__main__":
    sys.exit(main())
