"""What ``keep_freed_memory`` (glibc ``mallopt``, set by a CPU ``Trainer``) is worth.

Fresh processes, alternately with glibc's default malloc settings ("off": the trainer's
call replaced by a no-op before the trainer is built) and with the trainer's ("on"), each
timing ``--steps`` steps of the real trainer (``step_breakdown.trainer_for``) after a
warm-up. Per process: median wall ms per step, minor page faults, system and user CPU ms
per step. The settings are process-wide and cannot be undone once set, so the two cannot
alternate inside one process; pairs of neighbouring processes are compared instead, and
the median of the pairs' ratios is printed.

Usage::

    python benchmarks/freed_memory.py --config small --pairs 10 --steps 80

Run it alone on the machine: other work on the same cores distorts every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def child(config: str, setting: str, steps: int, warmup: int, threads: int) -> None:
    """Time the trainer's steps in this process; print one JSON line."""
    from informer_nas.informer import training

    if setting == "off":
        training.keep_freed_memory = lambda: False  # type: ignore[assignment]
    from step_breakdown import batches, trainer_for

    trainer = trainer_for(config, threads)
    source = batches(trainer)
    for _ in range(warmup):
        trainer.train_step(next(source))
    seconds = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        batch = next(source)
        started = time.perf_counter()
        trainer.train_step(batch)
        seconds.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "ms": statistics.median(seconds) * 1e3,
        "faults": (after.ru_minflt - before.ru_minflt) / steps,
        "sys_ms": (after.ru_stime - before.ru_stime) / steps * 1e3,
        "user_ms": (after.ru_utime - before.ru_utime) / steps * 1e3,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("small", "paper"), default="small")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=("off", "on"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.child, args.steps, args.warmup, args.threads)
        return
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(args.pairs):
        for setting in ("off", "on"):
            command = [sys.executable, __file__, "--child", setting, "--config", args.config,
                       "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True)
            results[setting].append(json.loads(output.stdout.splitlines()[-1]))
        off, on = results["off"][-1], results["on"][-1]
        print(f"off {off['ms']:.1f} ms ({off['faults']:.0f} faults), "
              f"on {on['ms']:.1f} ms ({on['faults']:.0f} faults)", flush=True)
    print("| malloc settings | ms / step | page faults / step | system CPU ms / step "
          "| user CPU ms / step |\n|---|---|---|---|---|")
    for setting, label in (("off", "glibc defaults"), ("on", "keep_freed_memory")):
        rows = results[setting]
        cells = [statistics.median(row[key] for row in rows)
                 for key in ("ms", "faults", "sys_ms", "user_ms")]
        print(f"| {label} | {cells[0]:.1f} | {cells[1]:.0f} | {cells[2]:.1f} | {cells[3]:.1f} |")
    ratios = [off["ms"] / on["ms"] for off, on in zip(results["off"], results["on"], strict=True)]
    faster = sum(ratio > 1.0 for ratio in ratios)
    print(f"median of {len(ratios)} pairs' ratios (off / on): {statistics.median(ratios):.3f}; "
          f"'on' faster in {faster} of {len(ratios)} pairs")


if __name__ == "__main__":
    main()
