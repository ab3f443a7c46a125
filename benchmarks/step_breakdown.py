"""Where a CPU training step's time goes, and the floor it cannot go below.

One process builds the real ``Trainer`` (a config of ``train_throughput.py``: ``small`` or
``paper``) and measures, at the given thread count:

- the step: median wall time of ``Trainer.train_step`` over ``--steps`` steps, unprofiled;
- dropout's share: the same step with the dropout probability at 0 (every other FLOP
  unchanged), the two trainers alternating block by block so that drift hits both alike;
- the per-step overhead: the same step at batch size 1 (a fresh trainer, same model), where
  the arithmetic is negligible and what is left is Python, the dispatcher, autograd and the
  optimizer's fixed cost; this part does not shrink with more cores or faster kernels;
- the matrix products: under ``torch.profiler``, the wall time spent in ``aten::mm``,
  ``addmm``, ``bmm`` and ``baddbmm`` and their FLOPs (from the recorded shapes), so their rate
  can be set against the machine's: a 2048 x 2048 x 2048 ``sgemm`` at the same threads;
- the rest: fused attention kernels and every other ATen op (element-wise, reductions,
  copies, indexing), and what the profiler sees outside ATen ops.

The floor is the matrix products at the machine's large-``sgemm`` rate plus the batch-1
overhead: a step cannot be faster without fewer FLOPs, a faster GEMM or less per-op
overhead. ``--target-ms`` (for example the reference's same-sitting step divided by the
target speed-up) prints how much of everything else would have to go to reach it.

Usage::

    python benchmarks/step_breakdown.py --config small --threads 2
    python benchmarks/step_breakdown.py --config small --threads 2 --target-ms 68.7
    python benchmarks/step_breakdown.py --config paper --threads 2 --steps 5

Run it alone on the machine: other work on the same cores distorts every figure.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from train_throughput import named_config

from informer_nas.informer.config import InformerConfig
from informer_nas.informer.training import Trainer
from informer_nas.informer.windows import Batch

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def trainer_for(name: str, threads: int, batch_size: int | None = None,
                dropout: float | None = None) -> Trainer:
    """The real trainer for a named config on CPU (train windows uncapped)."""
    config = named_config(name).to_dict()
    config["training"].update(device="cpu", num_threads=threads)
    if batch_size is not None:
        config["data"]["batch_size"] = batch_size
    if dropout is not None:
        config["model"]["dropout"] = dropout
    trainer = Trainer(InformerConfig.model_validate(config))
    trainer.model.train()
    return trainer


def batches(trainer: Trainer) -> Iterator[Batch]:
    """Shuffled training batches, epoch after epoch."""
    size = trainer.config.data.batch_size
    while True:
        yield from trainer.data.train.batches(size, True, trainer.generator, drop_last=True)


def median_step_seconds(trainer: Trainer, steps: int, warmup: int) -> float:
    """Median wall seconds of ``train_step`` (the batch is gathered outside the timing)."""
    source, times = batches(trainer), []
    for index in range(warmup + steps):
        batch = next(source)
        started = time.perf_counter()
        trainer.train_step(batch)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def alternating_medians(trainers: list[Trainer], steps: int, block: int = 5,
                        warmup: int = 3) -> list[float]:
    """Median step seconds of each trainer, run in turns of ``block`` steps."""
    sources = [batches(trainer) for trainer in trainers]
    times: list[list[float]] = [[] for _ in trainers]
    for trainer, source in zip(trainers, sources, strict=True):
        for _ in range(warmup):
            trainer.train_step(next(source))
    for _ in range(-(-steps // block)):
        for trainer, source, measured in zip(trainers, sources, times, strict=True):
            for _ in range(block):
                batch = next(source)
                started = time.perf_counter()
                trainer.train_step(batch)
                measured.append(time.perf_counter() - started)
    return [statistics.median(measured) for measured in times]


def matmul_flops(name: str, shapes: list[Any]) -> float:
    """FLOPs of one matrix-product op from its recorded input shapes (0 if unknown)."""
    try:
        if name == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return 2.0 * m * k * n
        if name == "aten::addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
            return 2.0 * m * k * n
        if name in ("aten::bmm", "aten::baddbmm"):
            first = 1 if name == "aten::baddbmm" else 0
            (b, m, k), (_, _, n) = shapes[first], shapes[first + 1]
            return 2.0 * b * m * k * n
    except (TypeError, ValueError, IndexError):
        pass
    return 0.0


def profiled_breakdown(trainer: Trainer, steps: int) -> dict[str, float]:
    """Per-step milliseconds by category, and matmul GFLOP, from ``torch.profiler``."""
    source = batches(trainer)
    for _ in range(3):
        trainer.train_step(next(source))
    step_batches = [next(source) for _ in range(steps)]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        started = time.perf_counter()
        for batch in step_batches:
            trainer.train_step(batch)
        wall = time.perf_counter() - started
    totals = {"matmul": 0.0, "attention kernels": 0.0, "other ATen ops": 0.0}
    flops = 0.0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        seconds = event.self_cpu_time_total / 1e6
        if event.name in MATMUL_OPS:
            totals["matmul"] += seconds
            flops += matmul_flops(event.name, event.input_shapes)
        elif "scaled_dot_product" in event.name:
            totals["attention kernels"] += seconds
        else:
            totals["other ATen ops"] += seconds
    result = {key: value / steps * 1e3 for key, value in totals.items()}
    result["outside ATen ops (with the profiler's own cost)"] = (
        wall / steps * 1e3 - sum(result.values()))
    result["profiled step"] = wall / steps * 1e3
    result["matmul GFLOP"] = flops / steps / 1e9
    return result


def sgemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The machine's matrix-product rate: a large square float32 product at ``threads``."""
    torch.set_num_threads(threads)
    left, right = torch.randn(size, size), torch.randn(size, size)
    left @ right
    started = time.perf_counter()
    for _ in range(repeats):
        left @ right
    return 2.0 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def report(name: str, threads: int, steps: int, target_ms: float | None,
           echo: Callable[[str], None] = print) -> None:
    """Measure and print the breakdown as a markdown table."""
    trainer = trainer_for(name, threads)
    step_ms = median_step_seconds(trainer, steps, warmup=5) * 1e3
    parts = profiled_breakdown(trainer, steps)
    with_dropout, without = alternating_medians(
        [trainer, trainer_for(name, threads, dropout=0.0)], steps)
    single = trainer_for(name, threads, batch_size=1)
    overhead_ms = median_step_seconds(single, max(steps, 20), warmup=5) * 1e3
    peak = sgemm_gflops(threads)
    matmul_floor_ms = parts["matmul GFLOP"] / peak * 1e3
    floor_ms = matmul_floor_ms + overhead_ms
    echo(f"{name} config, {threads} thread(s), {steps} steps, torch {torch.__version__}\n")
    echo("| part | ms / step | note |")
    echo("|---|---|---|")
    echo(f"| step (unprofiled median) | {step_ms:.1f} | batch {trainer.config.data.batch_size} |")
    echo(f"| step under the profiler | {parts['profiled step']:.1f} | the rows below add up "
         "to it |")
    rate = parts["matmul GFLOP"] / parts["matmul"] * 1e3 if parts["matmul"] else 0.0
    echo(f"| matrix products | {parts['matmul']:.1f} | {parts['matmul GFLOP']:.2f} GFLOP at "
         f"{rate:.1f} GFLOP/s; a 2048^3 sgemm runs at {peak:.1f} GFLOP/s |")
    for key in ("attention kernels", "other ATen ops",
                "outside ATen ops (with the profiler's own cost)"):
        echo(f"| {key} | {parts[key]:.1f} | |")
    echo(f"| dropout (forward and backward) | {(with_dropout - without) * 1e3:.1f} | the "
         f"step with dropout {trainer.config.model.dropout}, {with_dropout * 1e3:.1f} ms, "
         f"against p = 0, {without * 1e3:.1f} ms, alternating |")
    echo(f"| per-step overhead (batch 1, unprofiled) | {overhead_ms:.1f} | Python, dispatch, "
         "autograd, optimizer |")
    echo(f"| floor: products at the sgemm rate + overhead | {floor_ms:.1f} | "
         f"{matmul_floor_ms:.1f} + {overhead_ms:.1f} |")
    if target_ms is not None:
        rest = step_ms - floor_ms
        allowed = target_ms - floor_ms
        share = 1.0 - allowed / rest if rest > 0 else 0.0
        echo(f"| target | {target_ms:.1f} | leaves {allowed:.1f} ms for the other "
             f"{rest:.1f} ms of the step: {share:.0%} of it would have to go |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="small or paper (train_throughput)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--target-ms", type=float, default=None,
                        help="a target step time to set against the floor")
    args = parser.parse_args(argv)
    report(args.config, args.threads, args.steps, args.target_ms)


if __name__ == "__main__":
    main()
