"""What a ``Trainer`` sets up before its first step: the device, the CPU threads, the
allocator, the seeds, the loss criterion and the learning-rate schedule.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from informer_nas.errors import ConfigError
from informer_nas.informer.config import TrainingSection


def resolve_device(training: TrainingSection) -> torch.device:
    """``auto``: CUDA when present, else CPU. Raises ConfigError for missing CUDA."""
    if training.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "training.device is 'cuda' but no CUDA device is available; set it to 'auto' or 'cpu'"
        )
    if training.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def default_num_threads() -> int:
    """Physical cores available to this process (torch's default, capped by affinity)."""
    has_affinity = hasattr(os, "sched_getaffinity")  # Linux only
    available = len(os.sched_getaffinity(0)) if has_affinity else os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), available))


# glibc's mallopt parameters (malloc.h): the size above which a block is mmap'ed on its own,
# and the free space at the heap's top above which it is returned to the kernel.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit machines
_TRIM_THRESHOLD = 1024**3  # above a paper-config step's working set


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks instead of handing them back to the kernel.

    A CPU training step frees and allocates the same activations (up to a few MB each) every
    step. By default glibc serves blocks above its mmap threshold from fresh pages and trims
    the heap's top, so every step touches new pages: about 2,000 page faults per small-config
    step, several ms of a 40 ms step. Blocks up to 32 MB now come from the heap, and up to 1 GiB
    of free heap is kept for the next step. Peak memory is unchanged (each step reaches it
    anyway); what is kept is released at process exit.
    Returns False where the C library has no ``mallopt`` (not glibc): nothing changes there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy; return the generator that shuffles the train windows."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


class EpochScheduler:
    """Per-epoch learning-rate schedule, stepped after each epoch (1-based). ``type1`` is
    the reference's: after epoch e the rate becomes lr0 * 0.5 ** (e - 1).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, training: TrainingSection) -> None:
        self.optimizer = optimizer
        self.name = training.scheduler_class
        self.base_lr = training.optimizer_params.lr
        schedulers, step = torch.optim.lr_scheduler, training.scheduler_params
        self._torch: torch.optim.lr_scheduler.LRScheduler | None = None
        if self.name == "CosineAnnealingLR":
            self._torch = schedulers.CosineAnnealingLR(optimizer, T_max=training.max_epochs)
        elif self.name == "StepLR":
            self._torch = schedulers.StepLR(optimizer, step.step_size, gamma=step.gamma)
        elif self.name not in ("type1", "none"):
            raise ConfigError(f"training.scheduler_class {self.name!r} is unknown")

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, epoch: int) -> None:
        if self._torch is not None:
            self._torch.step()
        elif self.name == "type1":
            for group in self.optimizer.param_groups:
                group["lr"] = self.base_lr * 0.5 ** (epoch - 1)


CRITERIA: dict[str, Callable[[], nn.Module]] = {
    "MSELoss": nn.MSELoss, "L1Loss": nn.L1Loss, "SmoothL1Loss": nn.SmoothL1Loss,
    "HuberLoss": nn.HuberLoss,
}
