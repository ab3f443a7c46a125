"""Whole training steps against the reference implementation: the issue-2 speed ratio.

A step here is everything one training iteration costs: fetching the batch, forward, loss,
backward, optimizer step. Ours is ``Trainer.train_step`` on a batch from the trainer's own
gather (``step_breakdown.trainer_for``: the real trainer, ETTh1 M 96 -> 24, batch 32). The
reference's is one iteration of its ``Exp_Informer.train`` loop, driven through its own
objects from a checkout of zhouhaoyi/Informer2020 (its per-sample ``Dataset_ETT_hour`` and
``DataLoader``, its model, ``Adam``, ``MSELoss``, ``_process_one_batch``, and the
``loss.item()`` it logs every iteration). Nothing of the reference is copied here: pass the
checkout's path.

Two ways to run:

- default: one process, the two steps alternating one by one, so that the machine's drift
  (this kind of shared machine changes speed from second to second) hits both alike;
- ``--rounds N``: 2N fresh processes, reference then ours, N times, each timing ``--steps``
  steps of one side. This is the fair comparison of whole processes: our trainer sets
  process-wide options that the reference's process does not have (glibc's ``mallopt``,
  ``Trainer`` on CPU), and in one process the reference would get them too. Prints each
  round and the median of the rounds' ratios.

Usage::

    python benchmarks/whole_step.py --reference ~/Informer2020 --config small --steps 100
    python benchmarks/whole_step.py --reference ~/Informer2020 --config small --rounds 8
    python benchmarks/whole_step.py --reference ~/Informer2020 --config paper --steps 15 --warmup 2

Run it alone on the machine: other work on the same cores distorts every figure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BATCH = 32
SIDES = ("reference", "ours")


def our_step(config: str, threads: int) -> Callable[[], None]:
    """One training step of our trainer, batch fetch included."""
    from step_breakdown import batches, trainer_for

    trainer = trainer_for(config, threads)
    source = batches(trainer)

    def step() -> None:
        trainer.train_step(next(source))

    return step


def reference_step(checkout: Path, config: str, threads: int) -> Callable[[], None]:
    """One iteration of the reference's training loop, through its own objects."""
    import torch

    from informer_nas.informer.data_files import bundled_csv_path

    sys.path.insert(0, str(checkout))
    from exp.exp_informer import Exp_Informer  # type: ignore[import-not-found,unused-ignore]
    from utils.tools import dotdict  # type: ignore[import-not-found,unused-ignore]

    widths = {"small": {"d_model": 64, "n_heads": 4, "d_ff": 256},
              "paper": {"d_model": 512, "n_heads": 8, "d_ff": 2048}}[config]
    csv = bundled_csv_path()
    args = dotdict(
        model="informer", data="ETTh1", root_path=str(csv.parent), data_path=csv.name,
        features="M", target="OT", freq="h", detail_freq="h", checkpoints="./checkpoints/",
        seq_len=96, label_len=48, pred_len=24, enc_in=7, dec_in=7, c_out=7, factor=5,
        e_layers=2, d_layers=1, s_layers=[3, 2, 1], dropout=0.05, attn="prob", embed="timeF",
        activation="gelu", output_attention=False, distil=True, mix=True, padding=0,
        cols=None, num_workers=0, itr=1, train_epochs=6, batch_size=BATCH, patience=3,
        learning_rate=1e-4, loss="mse", lradj="type1", use_amp=False, inverse=False,
        use_gpu=False, gpu=0, use_multi_gpu=False, devices="0", **widths,
    )
    experiment = Exp_Informer(args)
    torch.set_num_threads(threads)
    train_data, train_loader = experiment._get_data(flag="train")
    optimizer = experiment._select_optimizer()
    criterion = experiment._select_criterion()
    experiment.model.train()
    losses: list[float] = []

    def epochs() -> Iterator[Any]:
        while True:
            yield from train_loader

    source = epochs()

    def step() -> None:
        batch_x, batch_y, batch_x_mark, batch_y_mark = next(source)
        optimizer.zero_grad()
        pred, true = experiment._process_one_batch(
            train_data, batch_x, batch_y, batch_x_mark, batch_y_mark)
        loss = criterion(pred, true)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()

    return step


def time_steps(steps: dict[str, Callable[[], None]], n_steps: int,
               warmup: int) -> dict[str, float]:
    """Median wall seconds per step of each side, the sides alternating step by step."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    seconds: dict[str, list[float]] = {side: [] for side in steps}
    for _ in range(n_steps):
        for side, step in steps.items():
            started = time.perf_counter()
            step()
            seconds[side].append(time.perf_counter() - started)
    return {side: statistics.median(values) for side, values in seconds.items()}


def build(sides: tuple[str, ...], args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    import torch

    torch.manual_seed(0)
    makers = {"reference": lambda: reference_step(args.reference, args.config, args.threads),
              "ours": lambda: our_step(args.config, args.threads)}
    return {side: makers[side]() for side in sides}


def in_children(args: argparse.Namespace) -> None:
    """``--rounds``: reference and ours in separate fresh processes, alternately."""
    ratios = []
    for round_index in range(args.rounds):
        medians = {}
        for side in SIDES:
            command = [sys.executable, __file__, "--reference", str(args.reference),
                       "--config", args.config, "--steps", str(args.steps), "--warmup",
                       str(args.warmup), "--threads", str(args.threads), "--only", side]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            medians[side] = float(output.split()[-1])
        ratios.append(medians["reference"] / medians["ours"])
        print(f"round {round_index + 1}: reference {medians['reference'] * 1e3:.1f} ms, "
              f"ours {medians['ours'] * 1e3:.1f} ms per step, {ratios[-1]:.2f}x", flush=True)
    print(f"median of {args.rounds} rounds: {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout of zhouhaoyi/Informer2020")
    parser.add_argument("--config", choices=("small", "paper"), default="small")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=0,
                        help="N > 0: 2N fresh processes, one side each, alternating")
    parser.add_argument("--only", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds > 0:
        in_children(args)
        return
    sides = (args.only,) if args.only else SIDES
    medians = time_steps(build(sides, args), args.steps, args.warmup)
    if args.only:
        print(medians[args.only])  # read by the parent
        return
    for side, seconds in medians.items():
        print(f"{side}: median {seconds * 1e3:.1f} ms per step ({BATCH / seconds:.0f} samples/s)")
    print(f"speed-up: {medians['reference'] / medians['ours']:.2f}x")


if __name__ == "__main__":
    main()
