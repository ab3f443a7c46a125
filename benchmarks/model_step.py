"""Time Informer training steps (forward, MSE loss, backward, optimizer step) on random data.

Usage::

    python benchmarks/model_step.py --config small --threads 1 --steps 10
    python benchmarks/model_step.py --config paper --threads 2 --steps 3
    python benchmarks/model_step.py --config small --reference ~/Informer2020

``small`` is d_model 64, n_heads 4, d_ff 256; ``paper`` the reference defaults (d_model 512).
Both use features M on 7 channels, seq_len 96, label_len 48, pred_len 24, batch 32, freq h,
and the trainer's default optimizer (``build_optimizer``). Only the model step is timed.

``--reference DIR`` (a checkout of zhouhaoyi/Informer2020) times the reference model too,
alternating step by step in this one process, and prints the ratio. Besides wall time the
process CPU time is reported: on a shared machine it is the steadier figure for
single-thread comparisons.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from informer_nas.informer.config import ModelSection, TrainingSection
from informer_nas.informer.model import Informer, count_parameters
from informer_nas.informer.optimizers import build_optimizer

CONFIGS = {
    "small": ModelSection(d_model=64, n_heads=4, d_ff=256),
    "paper": ModelSection(),
}
SEQ_LEN, LABEL_LEN, PRED_LEN, CHANNELS, N_MARKS = 96, 48, 24, 7, 4

Batch = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
Step = Callable[[Batch], None]


def random_batch(batch_size: int) -> Batch:
    """(x_enc, x_mark_enc, x_dec, x_mark_dec, target) with the ETTh1 M shapes."""
    x_enc = torch.randn(batch_size, SEQ_LEN, CHANNELS)
    target = torch.randn(batch_size, PRED_LEN, CHANNELS)
    x_dec = torch.cat([x_enc[:, -LABEL_LEN:], torch.zeros(batch_size, PRED_LEN, CHANNELS)], 1)
    x_mark_enc = torch.rand(batch_size, SEQ_LEN, N_MARKS) - 0.5
    x_mark_dec = torch.rand(batch_size, LABEL_LEN + PRED_LEN, N_MARKS) - 0.5
    return x_enc, x_mark_enc, x_dec, x_mark_dec, target


def training_step(model: nn.Module) -> Step:
    """A closure running one optimisation step of ``model`` (in training mode) on a batch."""
    model.train()
    optimizer = build_optimizer(model.parameters(), TrainingSection())
    criterion = nn.MSELoss()

    def step(batch: Batch) -> None:
        x_enc, x_mark_enc, x_dec, x_mark_dec, target = batch
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x_enc, x_mark_enc, x_dec, x_mark_dec), target)
        loss.backward()
        optimizer.step()

    return step


def reference_model(checkout: Path, cfg: ModelSection) -> nn.Module:
    """The reference implementation's Informer from a checkout of zhouhaoyi/Informer2020."""
    sys.path.insert(0, str(checkout))
    from models.model import Informer as ReferenceInformer  # type: ignore[import-not-found,unused-ignore]

    model: nn.Module = ReferenceInformer(
        CHANNELS, CHANNELS, CHANNELS, SEQ_LEN, LABEL_LEN, PRED_LEN, factor=cfg.factor,
        d_model=cfg.d_model, n_heads=cfg.n_heads, e_layers=cfg.e_layers, d_layers=cfg.d_layers,
        d_ff=cfg.d_ff, dropout=cfg.dropout, attn=cfg.attn, embed=cfg.embed, freq="h",
        activation=cfg.activation, distil=cfg.distil, mix=cfg.mix, device=torch.device("cpu"),
    )
    return model


def time_alternately(steps: dict[str, Step], batch: Batch,
                     n_steps: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds per step for each step function, after one warm-up each."""
    for step in steps.values():
        step(batch)
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(n_steps):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step(batch)
            seconds[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return seconds


def report(name: str, seconds: list[tuple[float, float]], batch_size: int) -> float:
    """Print one line for a model; returns its median wall seconds per step."""
    wall = statistics.median(s[0] for s in seconds)
    cpu = statistics.median(s[1] for s in seconds)
    print(f"{name}: median {wall * 1e3:.1f} ms/step wall ({batch_size / wall:.0f} samples/s), "
          f"{cpu * 1e3:.1f} ms CPU, min wall {min(s[0] for s in seconds) * 1e3:.1f} ms")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reference", type=Path, help="a zhouhaoyi/Informer2020 checkout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]
    ours = Informer(cfg, CHANNELS, CHANNELS, CHANNELS, PRED_LEN, "h")
    print(f"config {args.config}: {count_parameters(ours):,} parameters, "
          f"{args.threads} thread(s), batch {args.batch_size}")
    steps = {"informer_nas": training_step(ours)}
    if args.reference is not None:
        steps["reference"] = training_step(reference_model(args.reference, cfg))
    seconds = time_alternately(steps, random_batch(args.batch_size), args.steps)
    walls = {name: report(name, times, args.batch_size) for name, times in seconds.items()}
    if "reference" in walls:
        cpu = {name: statistics.median(s[1] for s in times) for name, times in seconds.items()}
        print(f"speed-up: {walls['reference'] / walls['informer_nas']:.2f}x wall, "
              f"{cpu['reference'] / cpu['informer_nas']:.2f}x CPU")


if __name__ == "__main__":
    main()
