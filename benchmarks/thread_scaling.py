"""How a CPU training step scales from one thread to two, phase by phase and op by op.

The same trainer (a config of ``train_throughput.py``) runs at 1 and at 2 threads in
alternating fresh processes (``--rounds`` of each, ``--steps`` steps per process), so that the
machine's drift hits both alike. (Switching the thread count inside one process slowed the
2-thread steps by about 30 % here, hence one process per measurement.) Printed:

- forward, backward and optimizer milliseconds per step at each thread count (medians), and
  the split of the step into a part that does not shrink with the second thread and a part
  that halves (Amdahl: ``serial = 2 * T2 - T1``, ``parallel = 2 * (T1 - T2)``);
- per ATen op, the milliseconds per step at each thread count and their ratio, timed by a
  ``TorchDispatchMode`` around every op (it adds a few microseconds per op: read the ratios
  and the ranking, not the absolute sum).

Usage::

    python benchmarks/thread_scaling.py --config small
    python benchmarks/thread_scaling.py --config small --steps 40 --rounds 3 --top 30

Run it alone on the machine: other work on the same cores distorts every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import torch
from step_breakdown import batches, trainer_for
from torch.utils._python_dispatch import TorchDispatchMode

from informer_nas.informer.training import Trainer

THREADS = (1, 2)


class OpTimer(TorchDispatchMode):
    """Wall seconds and calls per ATen op."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        started = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[str(func.overloadpacket)] += time.perf_counter() - started
        return out


def phase_seconds(trainer: Trainer, source: Any, steps: int) -> list[list[float]]:
    """[forward, backward, optimizer] seconds of each of ``steps`` steps."""
    measured = []
    for _ in range(steps):
        batch = next(source)
        started = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        loss = trainer.criterion(trainer.predict(batch).float(), batch.y)
        loss.item()
        forward_done = time.perf_counter()
        loss.backward()
        backward_done = time.perf_counter()
        trainer.optimizer.step()
        measured.append([forward_done - started, backward_done - forward_done,
                         time.perf_counter() - backward_done])
    return measured


def op_milliseconds(trainer: Trainer, source: Any, steps: int) -> dict[str, float]:
    """Per-step milliseconds of each ATen op over ``steps`` training steps."""
    timer = OpTimer()
    with timer:
        for _ in range(steps):
            trainer.train_step(next(source))
    return {name: seconds / steps * 1e3 for name, seconds in timer.seconds.items()}


def measure(config: str, threads: int, steps: int) -> dict[str, Any]:
    """One process's measurement: phases of ``steps`` steps, then the per-op times."""
    trainer = trainer_for(config, threads)
    source = batches(trainer)
    phase_seconds(trainer, source, 5)  # warm-up
    return {"phases": phase_seconds(trainer, source, steps),
            "ops": op_milliseconds(trainer, source, max(5, steps // 4))}


def child(config: str, threads: int, steps: int) -> dict[str, Any]:
    """``measure`` in a fresh process."""
    command = [sys.executable, __file__, "--config", config, "--steps", str(steps),
               "--child", str(threads)]
    result: dict[str, Any] = json.loads(subprocess.run(command, capture_output=True, text=True,
                                                       check=True).stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--steps", type=int, default=40, help="steps per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks per thread count")
    parser.add_argument("--top", type=int, default=25, help="ops listed")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.config, args.child, args.steps)))
        return
    phases: dict[int, list[list[float]]] = {threads: [] for threads in THREADS}
    ops: dict[int, list[dict[str, float]]] = {threads: [] for threads in THREADS}
    for _ in range(args.rounds):
        for threads in THREADS:
            result = child(args.config, threads, args.steps)
            phases[threads] += result["phases"]
            ops[threads].append(result["ops"])

    print(f"{args.config} config, torch {torch.__version__}, {args.rounds} alternating "
          f"processes of {args.steps} steps per thread count\n")
    print("| threads | forward ms | backward ms | optimizer ms | step ms |")
    print("|---|---|---|---|---|")
    totals = {}
    for threads in THREADS:
        medians = [statistics.median(step[part] for step in phases[threads]) * 1e3
                   for part in range(3)]
        totals[threads] = statistics.median(sum(step) for step in phases[threads]) * 1e3
        print(f"| {threads} | {medians[0]:.1f} | {medians[1]:.1f} | {medians[2]:.1f} | "
              f"{totals[threads]:.1f} |")
    one, two = totals[1], totals[2]
    print(f"\nspeed-up from the second thread: {one / two:.2f}x; a part that does not "
          f"shrink: {2 * two - one:.1f} ms, a part that halves: {2 * (one - two):.1f} ms "
          "(of the 1-thread step)\n")

    def best(threads: int, name: str) -> float:  # the least disturbed process
        return min(round_.get(name, 0.0) for round_ in ops[threads])

    names = sorted({name for round_ in ops[1] for name in round_}, key=lambda n: -best(1, n))
    print("| ATen op | 1 thread ms | 2 threads ms | ratio |")
    print("|---|---|---|---|")
    for name in names[:args.top]:
        single, double = best(1, name), best(2, name)
        ratio = f"{single / double:.2f}" if double > 0 else "-"
        print(f"| {name} | {single:.3f} | {double:.3f} | {ratio} |")
    print(f"| all ops | {sum(best(1, n) for n in names):.1f} | "
          f"{sum(best(2, n) for n in names):.1f} | |")


if __name__ == "__main__":
    main()
