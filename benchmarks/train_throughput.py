"""Training throughput (samples/s) and peak memory of the real trainer, per config and device.

Each (config, device) pair runs in its own child process, which builds the ``Trainer`` on
the bundled ETTh1 (features M, 96 -> 24) and times ``--steps`` steps of the trainer's own
loop (``Trainer.train_epoch``: shuffled batch gather, forward, loss, backward, optimizer
step, progress throttle, stop check) after ``--warmup`` steps. Reported per pair: wall and
process CPU seconds per step, samples/s, the start-up (process spawn to a ready trainer:
imports, data, model, optimizer; every NAS trial pays it) and the child's peak RSS (its
``ru_maxrss``, read by the parent with ``os.wait4``, so configs do not pollute each other).
``--repeats N`` runs N fresh children per pair, interleaved, and shows the median.
``--reference-figures`` adds the ratios to the reference's figures below. Prints a
markdown table.

Usage::

    python benchmarks/train_throughput.py                       # small and paper, CPU (+ CUDA)
    python benchmarks/train_throughput.py --configs small --steps 100 --threads 2
    python benchmarks/train_throughput.py --configs small --steps 2 --warmup 1   # smoke test
    python benchmarks/train_throughput.py --steps 100 --repeats 3 --reference-figures

Measure with nothing else running on the machine: a second job on the same cores makes
every figure meaningless. The reference implementation, measured alone on a 2-core CPU with
torch 2.13: 230 samples/s (small), 17 samples/s (paper), peak RSS 0.58 GB and 1.8 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from informer_nas.informer.config import InformerConfig
from informer_nas.informer.presets import preset_config

# Reference implementation (zhouhaoyi/Informer2020), 2-core CPU, torch 2.13, alone.
REFERENCE_CPU = {"small": {"samples_per_second": 230.0, "peak_rss_mb": 580.0},
                 "paper": {"samples_per_second": 17.0, "peak_rss_mb": 1800.0}}


def named_config(name: str) -> InformerConfig:
    """``paper`` (the reference defaults), ``small`` (d_model 64, 4 heads, d_ff 256), or a
    preset name; all with features M, seq 96 / label 48 / pred 24, batch 32, no caps.
    """
    if name == "small":
        config = preset_config("paper").to_dict()
        config["model"].update(d_model=64, n_heads=4, d_ff=256)
    else:
        config = preset_config(name).to_dict()
    config["training"].update(max_train_windows=None, max_eval_windows=None)
    return InformerConfig.model_validate(config)


def measure(name: str, device: str, steps: int, warmup: int, threads: int | None,
            amp: bool) -> dict[str, Any]:
    """Run in the child: time ``steps`` steps of the trainer's own loop (``train_epoch``)."""
    import torch

    from informer_nas.informer.training import Trainer

    config = named_config(name).to_dict()
    config["training"].update(device=device, amp=amp, num_threads=threads)
    trainer = Trainer(InformerConfig.model_validate(config))
    ready_at = time.time()  # the parent adds the start-up: imports, data, model, optimizer
    if warmup > 0:  # (max_steps 0 would mean a whole epoch)
        trainer.train_epoch(1, max_steps=warmup)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.samples_trained = 0
    wall, cpu = time.perf_counter(), time.process_time()
    epoch, left = 2, steps
    while left > 0:  # shuffled passes of the real loop, each ends with a device sync
        done = min(left, trainer.steps_per_epoch)
        trainer.train_epoch(epoch, max_steps=done)
        epoch, left = epoch + 1, left - done
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    from informer_nas.informer import native

    kernels = "-" if device == "cuda" else "native" if native.status().loaded else "aten"
    return {
        "config": name, "device": device, "kernels": kernels,
        "threads": torch.get_num_threads(),
        "n_params": trainer.n_params, "steps": steps, "seconds": seconds,
        "cpu_seconds": cpu_seconds, "ready_at": ready_at,
        "samples_per_second": trainer.samples_trained / seconds,
        "seconds_per_step": seconds / steps,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }


def run_child(name: str, device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one pair in a fresh process; add its peak RSS."""
    command = [sys.executable, __file__, "--child", "--configs", name, "--devices", device,
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.amp:
        command.append("--amp")
    spawned = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} on {device} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["startup_seconds"] = result.pop("ready_at") - spawned
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median samples/s (the upper median for an even count)."""
    return sorted(runs, key=lambda r: r["samples_per_second"])[len(runs) // 2]


def markdown_table(results: list[dict[str, Any]], reference: bool = False) -> str:
    """One row per measurement; with ``reference`` the ratios to the reference's CPU figures
    (speed: ours / reference samples/s; memory: ours / reference peak RSS).
    """
    header = ("| config | device | CPU kernels | threads | params | steps | s/step | samples/s "
              "| CPU s/step | start-up s | peak RSS (MB) | peak CUDA (MB) |")
    if reference:
        header += " speed vs reference | RSS vs reference |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        cuda = f"{r['peak_cuda_mb']:.0f}" if r["peak_cuda_mb"] is not None else "-"
        line = (
            f"| {r['config']} | {r['device']} | {r.get('kernels', '-')} | {r['threads']} "
            f"| {r['n_params']:,} "
            f"| {r['steps']} | {r['seconds_per_step']:.4f} | {r['samples_per_second']:.1f} "
            f"| {r['cpu_seconds'] / r['steps']:.4f} | {r['startup_seconds']:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {cuda} |"
        )
        if reference:
            line += _reference_cells(r)
        lines.append(line)
    return "\n".join(lines)


def _reference_cells(r: dict[str, Any]) -> str:
    figures = REFERENCE_CPU.get(r["config"]) if r["device"] == "cpu" else None
    if figures is None:
        return " - | - |"
    speed = r["samples_per_second"] / figures["samples_per_second"]
    return f" {speed:.2f}x | {r['peak_rss_mb'] / figures['peak_rss_mb']:.2f}x |"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,paper", help="comma-separated: small,paper")
    parser.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, plus cuda "
                        "when present)")
    parser.add_argument("--steps", type=int, default=50, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh child processes per pair, interleaved; the median is shown")
    parser.add_argument("--reference-figures", action="store_true",
                        help="add the ratios to the reference's CPU figures (2-core, alone)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    if args.child:
        result = measure(configs[0], args.devices, args.steps, args.warmup, args.threads, args.amp)
        print(json.dumps(result), flush=True)
        return
    if args.devices is None:
        import torch

        args.devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    devices = [device.strip() for device in args.devices.split(",")]
    pairs = [(name, device) for name in configs for device in devices]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {pair: [] for pair in pairs}
    for _ in range(args.repeats):  # interleaved, so that a load change hits every pair
        for pair in pairs:
            runs[pair].append(run_child(*pair, args))
    results = [median_run(runs[pair]) for pair in pairs]
    print(markdown_table(results, reference=args.reference_figures))


if __name__ == "__main__":
    main()
