"""A run's outcome records and the files it leaves in its run directory.

Records: ``EpochRecord`` (a line of ``history.json``), ``EvalMetrics``, ``TrainResult``
(``metrics.json``), the statuses and their exit codes. Files: ``config_used.py``,
``metrics.json``, ``history.json``, ``learning_curve.png``, ``best_model.pt`` and
``train.log``. A write goes to a temporary file in the same
directory, is fsynced and renamed over the target, so a reader never sees half a file.
The NAS layers have their own writer (``nas_system/atomic.py``); the trainer sits below
them and keeps this small one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pprint
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from informer_nas.errors import ConfigError
from informer_nas.informer.config import InformerConfig, literal_from_source, validate_config

if TYPE_CHECKING:  # torch is imported lazily so that a refused config exits fast
    import torch
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

TrainStatus = Literal["ok", "crashed", "invalid_config", "diverged", "oom", "pruned", "interrupted"]
# Mirrors nas_system.records.EXIT_CODES (the informer layer cannot import it; a test
# checks that both agree).
EXIT_CODES: dict[str, int] = {
    "ok": 0, "crashed": 1, "invalid_config": 2, "diverged": 3, "oom": 4, "pruned": 5,
    "interrupted": 130,
}
StateDict = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class EvalMetrics:
    """Loss (the training criterion), MSE and MAE over every window, step and channel."""

    loss: float
    mse: float
    mae: float


@dataclass(frozen=True)
class EpochRecord:
    """One line of ``history.json`` (``lr`` is the rate used during the epoch)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_mse: float
    val_mae: float
    test_mse: float
    test_mae: float
    lr: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """The outcome of ``Trainer.fit``."""

    status: TrainStatus
    reason: str
    history: list[EpochRecord]
    best_epoch: int | None
    val: EvalMetrics | None
    test: EvalMetrics | None
    n_params: int
    train_seconds: float
    samples_per_second: float | None
    device: str
    seed: int
    best_state: StateDict | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def metrics(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "status": self.status, "reason": self.reason,
            "val_mse": self.val.mse if self.val else None,
            "val_mae": self.val.mae if self.val else None,
            "test_mse": self.test.mse if self.test else None,
            "test_mae": self.test.mae if self.test else None,
            "best_epoch": self.best_epoch, "epochs_run": len(self.history),
            "n_params": self.n_params, "train_seconds": round(self.train_seconds, 3),
            "samples_per_second": self.samples_per_second, "device": self.device,
            "seed": self.seed,
        }


CONFIG_USED = "config_used.py"
METRICS = "metrics.json"
HISTORY = "history.json"
LEARNING_CURVE = "learning_curve.png"
BEST_MODEL = "best_model.pt"
TRAIN_LOG = "train.log"
RUN_FILES = (CONFIG_USED, METRICS, HISTORY, LEARNING_CURVE, BEST_MODEL, TRAIN_LOG)


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, _FILE_MODE)  # mkstemp creates 0600; use the umask's default
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: Any) -> None:
    """Atomically write indented JSON (NaN and inf are written as null)."""
    atomic_write_text(path, json.dumps(_finite(payload), indent=2) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_history(run_dir: Path, history: Sequence[EpochRecord]) -> None:
    """``history.json``: {"epochs": [...]}, one entry per completed epoch."""
    write_json(run_dir / HISTORY, {"epochs": [record.to_dict() for record in history]})


def write_checkpoint(run_dir: Path, state: StateDict) -> None:
    """``best_model.pt``: the best epoch's state dict."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / BEST_MODEL, buffer.getvalue())


def config_used_text(source: str, config: InformerConfig) -> str:
    """The config file's text with ``training.seed`` set to the seed actually used.

    A file that reads back as the config trained is kept as it is. Otherwise the key is set
    in the syntax tree (``config_source``: comments and layout kept, the key inserted into
    ``training`` if the file has none), and the result is kept when it reads back as the
    config trained. Failing that (a file libcst cannot edit, which literal evaluation still
    accepts), the validated config is written out in full, below the original text turned
    into comments.
    """
    if _config_of(source) == config:  # the file names the seed used already
        return source
    from informer_nas.informer.config_source import set_values  # libcst (0.2 s): only here

    try:
        text = set_values(source, [("training.seed", config.training.seed)])
        if _config_of(text) == config:
            return text
    except ConfigError:
        pass
    commented = "".join(f"# {line}\n" for line in source.splitlines())
    body = pprint.pformat(config.to_dict(), indent=4, sort_dicts=False)  # a Python literal
    return f"# Original config file:\n{commented}\nCONFIG = {body}\n"


def _config_of(text: str) -> InformerConfig | None:
    """The validated config of a config file's text (None when it does not read back)."""
    try:
        return validate_config(literal_from_source(text, Path(CONFIG_USED)))
    except ConfigError:
        return None


def learning_curve_figure(history: Sequence[EpochRecord]) -> Figure:
    """The figure of ``learning_curve.png``: train and val loss per epoch, whole-number
    epoch ticks (also for a single epoch), an empty chart if there is none."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    epochs = [record.epoch for record in history]
    axes.plot(epochs, [r.train_loss for r in history], marker="o", label="train loss")
    axes.plot(epochs, [r.val_loss for r in history], marker="o", label="val loss")
    if not history:
        axes.text(0.5, 0.5, "no completed epoch", ha="center", va="center",
                  transform=axes.transAxes)
    # integer=True alone gives fractional ticks when fewer than two integers are in view
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


def write_learning_curve(path: Path, history: Sequence[EpochRecord]) -> None:
    """Write ``learning_curve.png`` (see ``learning_curve_figure``)."""
    figure = learning_curve_figure(history)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


class MemoryLogHandler(logging.Handler):
    """Keeps formatted log lines so ``train.log`` can be rewritten atomically."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def flush_to(self, path: Path) -> None:
        atomic_write_text(path, "\n".join(self.lines) + "\n")
