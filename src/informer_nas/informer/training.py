"""The epoch loop and evaluation, used in-process (tests, benchmarks) and by ``train.py``.

``Trainer.fit`` trains with early stopping on the val MSE (a tie is no improvement),
scores val and test every epoch, then reloads the best checkpoint and scores it again.
Divergence, interruption, pruning and OOM end a run with a status; bugs raise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from informer_nas.informer import native
from informer_nas.informer.config import InformerConfig
from informer_nas.informer.data import load_dataset
from informer_nas.informer.model import Informer
from informer_nas.informer.optimizers import build_optimizer
from informer_nas.informer.run_files import (
    EpochRecord,
    EvalMetrics,
    StateDict,
    TrainResult,
    TrainStatus,
)
from informer_nas.informer.trainer_setup import (
    CRITERIA,
    EpochScheduler,
    default_num_threads,
    keep_freed_memory,
    resolve_device,
    seed_everything,
)
from informer_nas.informer.windows import Batch, ETTData, WindowSet

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 256
STEP_EVENT_INTERVAL_S = 0.25  # at most ~4 step events per second

EventSink = Callable[[dict[str, Any]], None]
EpochCallback = Callable[[int, float], bool | str | None]  # (epoch, val_mse) -> prune?
Scores = tuple[EvalMetrics, EvalMetrics]  # (val, test)


@dataclass
class TrainHooks:
    """Optional callbacks: ``on_event`` gets the progress events (start, step, epoch);
    ``epoch_callback(epoch, val_mse)`` returning True or a reason (str) prunes the run
    (e.g. ``train.BestSoFarPruner``); ``should_stop()``, polled after every step and eval
    batch, True interrupts it; ``on_epoch_end(history, new_best_state_or_None)`` e.g.
    writes history.json and best_model.pt.
    """

    on_event: EventSink | None = None
    epoch_callback: EpochCallback | None = None
    should_stop: Callable[[], bool] | None = None
    on_epoch_end: Callable[[list[EpochRecord], StateDict | None], None] | None = None


class StopTraining(Exception):
    """Ends ``fit`` early with a status (diverged, interrupted, pruned)."""

    def __init__(self, status: TrainStatus, reason: str) -> None:
        super().__init__(reason)
        self.status: TrainStatus = status
        self.reason = reason


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA OOM, MemoryError and torch's CPU allocator failures."""
    text = str(exc) if isinstance(exc, RuntimeError) else ""
    return isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or (
        "out of memory" in text or "can't allocate memory" in text
    )


class Trainer:
    """Model, optimizer and data of one run.

    Args:
        config: a validated config.
        data: preloaded data (default: loaded from ``config.data`` with the caps).
        hooks: optional callbacks.
        model: another forecaster to train the same way (default: the ``Informer`` of
            ``config.model``, built after seeding). It is called as Informer is,
            ``model(x_enc, x_mark_enc, x_dec, x_mark_dec) -> (B, pred_len, c_out)``; seed
            torch before building it for repeatable runs.
        log_progress: log the start, each epoch and the end at INFO (a run's train.log);
            False logs them at DEBUG, for a caller that logs the outcome itself (the
            linear baseline: up to 200 short epochs, trained in the caller's process).

    Raises:
        ConfigError: CUDA requested but absent (DataError: unusable data).
    """

    def __init__(
        self, config: InformerConfig, data: ETTData | None = None,
        hooks: TrainHooks | None = None, model: nn.Module | None = None,
        log_progress: bool = True,
    ) -> None:
        training = config.training
        self.config, self.hooks = config, hooks or TrainHooks()
        self.progress_log_level = logging.INFO if log_progress else logging.DEBUG
        self.device = resolve_device(training)
        torch.set_num_threads(training.num_threads or default_num_threads())
        if self.device.type == "cpu":
            keep_freed_memory()
            native.kernels()  # compiled on a machine's first training, then cached
            logger.log(self.progress_log_level, "native CPU kernels: %s",
                       native.status().detail)
        self.generator = seed_everything(training.seed)
        if data is None:
            data = load_dataset(config.data, config.model.embed, training.max_train_windows,
                                training.max_eval_windows)
        self.data = data.to(self.device)
        if model is None:
            model = Informer(
                config.model, data.enc_in, data.dec_in, data.c_out, config.data.pred_len,
                config.data.freq, config.data.seq_len,
            )
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), training)
        self.scheduler = EpochScheduler(self.optimizer, training)
        self.criterion = CRITERIA[training.criterion_class]()
        self._setup_amp(training.amp)
        self.history: list[EpochRecord] = []
        self.best_state: StateDict | None = None
        self.samples_trained, self.train_seconds = 0, 0.0
        self.started = time.perf_counter()

    def _setup_amp(self, amp: bool) -> None:
        self.amp_dtype: torch.dtype | None = None
        if amp and self.device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        elif amp:
            logger.info("training.amp is ignored on CPU")
        use_scaler = self.amp_dtype is torch.float16
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def steps_per_epoch(self) -> int:
        return self.data.train.steps(self.config.data.batch_size, drop_last=True)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.hooks.on_event is not None:
            self.hooks.on_event(event)

    def _check_stop(self) -> None:
        if self.hooks.should_stop is not None and self.hooks.should_stop():
            raise StopTraining("interrupted", "stopped by a signal")

    def predict(self, batch: Batch) -> torch.Tensor:
        """The model's forecast for a batch, (B, pred_len, c_out), under AMP if enabled."""
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, self.amp_dtype) if amp else nullcontext():
            forecast: torch.Tensor = self.model(
                batch.x_enc, batch.x_mark_enc, batch.x_dec, batch.x_mark_dec
            )
        return forecast

    def train_step(self, batch: Batch) -> torch.Tensor:
        """One optimisation step; returns the detached loss (no device sync on CUDA)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss: torch.Tensor = self.criterion(self.predict(batch).float(), batch.y)
        if self.device.type == "cpu" and not math.isfinite(loss.item()):
            raise StopTraining("diverged", f"training loss became {loss.item()}")
        scaled_loss: torch.Tensor = self.grad_scaler.scale(loss)
        torch.autograd.backward(scaled_loss)
        grad_clip = self.config.training.grad_clip
        if grad_clip is not None:
            self.grad_scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return loss.detach()

    def train_epoch(self, epoch: int, max_steps: int | None = None) -> float:
        """Train one shuffled pass (or ``max_steps`` steps); return the mean batch loss."""
        self.model.train()
        batch_size = self.config.data.batch_size
        steps = min(self.steps_per_epoch, max_steps or self.steps_per_epoch)
        total = torch.zeros((), device=self.device)
        last_event, started = 0.0, time.perf_counter()
        batches = self.data.train.batches(batch_size, True, self.generator, drop_last=True)
        for step, batch in enumerate(batches, start=1):
            loss = self.train_step(batch)
            total += loss
            self.samples_trained += len(batch)
            now = time.monotonic()
            if now - last_event >= STEP_EVENT_INTERVAL_S or step == steps:
                last_event, value = now, loss.item()  # the one sync per logged step
                if not math.isfinite(value):
                    raise StopTraining("diverged", f"training loss became {value} at step {step}")
                self._emit({"event": "step", "epoch": epoch, "step": step, "steps": steps,
                            "loss": value})
            self._check_stop()
            if step >= steps:
                break
        mean_loss = total.item() / steps
        self.train_seconds += time.perf_counter() - started
        if not math.isfinite(mean_loss):
            raise StopTraining("diverged", f"training loss became {mean_loss} in epoch {epoch}")
        return mean_loss

    @torch.no_grad()
    def evaluate(self, windows: WindowSet) -> EvalMetrics:
        """Loss, MSE and MAE over every window of a split (standardised scale).

        ProbSparse attention samples keys at evaluation too: the samples are drawn from a
        generator seeded alike for every evaluation (and the training's random stream is left
        as it was), so the same weights always get the same score: the best epoch's
        checkpoint, reloaded and scored again, scores what its epoch did.
        """
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(self.config.training.seed)
            return self._evaluate(windows)

    def _evaluate(self, windows: WindowSet) -> EvalMetrics:
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        count = 0
        for batch in windows.batches(EVAL_BATCH_SIZE):
            self._check_stop()
            prediction = self.predict(batch).float()
            error = prediction - batch.y
            size = error.numel()
            sums += torch.stack([
                self.criterion(prediction, batch.y).double() * size,
                error.square().sum(dtype=torch.float64),
                error.abs().sum(dtype=torch.float64),
            ])
            count += size
        loss, mse, mae = (sums / count).tolist()
        return EvalMetrics(loss, mse, mae)

    def run_epoch(self, epoch: int) -> EpochRecord:
        """Train one epoch, then score val and test."""
        started, lr = time.perf_counter(), self.scheduler.lr
        train_loss = self.train_epoch(epoch)
        val, test = self.evaluate(self.data.val), self.evaluate(self.data.test)
        if not math.isfinite(val.loss):
            raise StopTraining("diverged", f"validation loss became {val.loss} in epoch {epoch}")
        seconds = time.perf_counter() - started
        return EpochRecord(
            epoch, train_loss, val.loss, val.mse, val.mae, test.mse, test.mae, lr, seconds
        )

    def fit(self) -> TrainResult:
        """Train with early stopping, then score the best checkpoint on val and test.

        Raises whatever is not a run outcome (bugs); OOM ends with status ``oom``.
        """
        training, self.started = self.config.training, time.perf_counter()
        self._emit({
            "event": "start", "n_params": self.n_params, "device": str(self.device),
            "max_epochs": training.max_epochs, "steps_per_epoch": self.steps_per_epoch,
            "seed": training.seed,
        })
        logger.log(self.progress_log_level, "training %d parameters on %s", self.n_params,
                   self.device)
        status: TrainStatus = "ok"
        scores = None
        try:
            reason = self._epoch_loop()
            scores = self._score_best_checkpoint()
        except StopTraining as stop:
            status, reason = stop.status, stop.reason
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            status, reason = "oom", f"out of memory: {str(exc).splitlines()[0][:200]}"
        logger.log(self.progress_log_level, "run ended: %s (%s)", status, reason)
        return self.outcome(status, reason, scores)

    def outcome(self, status: TrainStatus, reason: str, scores: Scores | None = None
                ) -> TrainResult:
        """The result of this run; without ``scores`` (val, test) the best epoch's numbers."""
        val, test = scores or self.best_epoch_metrics()
        return TrainResult(
            status, reason, list(self.history), self.best_epoch, val, test, self.n_params,
            time.perf_counter() - self.started, self._samples_per_second(), str(self.device),
            self.config.training.seed, self.best_state,
        )

    @property
    def best_epoch(self) -> int | None:
        """The first epoch with the lowest val MSE (None before any epoch).

        Selection follows val MSE, the search's objective, whatever the training criterion:
        with an L1 or Huber loss the epoch of the lowest val loss can differ.
        """
        best = self._best_record()
        return best.epoch if best else None

    def _best_record(self) -> EpochRecord | None:
        return min(self.history, key=lambda record: record.val_mse, default=None)

    def _epoch_loop(self) -> str:
        training = self.config.training
        best_mse, bad_epochs = math.inf, 0
        for epoch in range(1, training.max_epochs + 1):
            record = self.run_epoch(epoch)
            self.history.append(record)
            improved = record.val_mse < best_mse  # a tie is no improvement
            bad_epochs = 0 if improved else bad_epochs + 1
            if improved:
                best_mse, state = record.val_mse, self.model.state_dict()
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
            if self.hooks.on_epoch_end is not None:
                self.hooks.on_epoch_end(self.history, self.best_state if improved else None)
            self._emit({
                "event": "epoch", "epoch": epoch, "max_epochs": training.max_epochs,
                "train_loss": record.train_loss, "val_loss": record.val_loss,
                "val_mse": record.val_mse, "test_mse": record.test_mse, "lr": record.lr,
                "seconds": record.seconds,
            })
            logger.log(self.progress_log_level, "epoch %d: %s", epoch, record.to_dict())
            # the last epoch (max_epochs or patience) is never pruned: stopping there saves
            # nothing, and the finished run is judged on its result instead
            last = epoch == training.max_epochs or bad_epochs >= training.patience
            prune = (not last and self.hooks.epoch_callback
                     and self.hooks.epoch_callback(epoch, record.val_mse))
            if prune:  # True, or the reason
                reason = prune if isinstance(prune, str) else f"pruned after epoch {epoch}"
                raise StopTraining("pruned", reason)
            if bad_epochs >= training.patience:
                return f"early stopped after epoch {epoch} (patience {training.patience})"
            self.scheduler.step(epoch)
        return f"finished {training.max_epochs} epochs"

    def _score_best_checkpoint(self) -> Scores:
        """Score the best weights: reloaded, unless they are the last epoch's (scored)."""
        val, test = self.best_epoch_metrics()
        if self.best_epoch != len(self.history) or val is None or test is None:
            assert self.best_state is not None, "at least one epoch ran"
            self.model.load_state_dict(self.best_state)
            val, test = self.evaluate(self.data.val), self.evaluate(self.data.test)
        return val, test

    def best_epoch_metrics(self) -> tuple[EvalMetrics | None, EvalMetrics | None]:
        """A failed run reports the numbers its best completed epoch had (None if none)."""
        best = self._best_record()
        if best is None:
            return None, None
        return (
            EvalMetrics(best.val_loss, best.val_mse, best.val_mae),
            EvalMetrics(math.nan, best.test_mse, best.test_mae),
        )

    def _samples_per_second(self) -> float | None:
        if self.train_seconds <= 0 or self.samples_trained == 0:
            return None
        return round(self.samples_trained / self.train_seconds, 2)


def train_model(config: InformerConfig, hooks: TrainHooks | None = None) -> TrainResult:
    """Train ``config`` in-process (no files written) and return the outcome."""
    return Trainer(config, hooks=hooks).fit()
