"""A training step of the working tree against the same step at another git revision.

Machines drift by tens of percent within seconds, so a change of a few percent can only be
seen against its baseline measured in the same moments. This script extracts ``--baseline``
(any git revision) into a temporary package, builds the real ``Trainer`` of both trees for a
config of ``train_throughput.py`` (same seed, same batches), and runs their training steps in
turns, one step each, in one process. It prints the median step of each and their ratio
(baseline / working tree: above 1 the working tree is faster), in wall and CPU time.

Both trainers share the process, hence its process-wide settings (threads, the allocator's
options): use it for changes of the step itself, not of those settings
(``freed_memory.py`` compares an allocator option across processes).

Usage::

    python benchmarks/ab_step.py --baseline HEAD~1
    python benchmarks/ab_step.py --baseline ca26315^ --config small --steps 60 --repeats 3
    python benchmarks/ab_step.py --baseline ca26315^ --config paper --steps 8

Run it alone on the machine: other work on the same cores distorts every figure.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from step_breakdown import batches  # (either tree's trainer: the same interface)
from train_throughput import named_config

REPOSITORY = Path(__file__).resolve().parent.parent
BASELINE_PACKAGE = "informer_nas_baseline"


def extract_baseline(revision: str, into: Path) -> None:
    """``src/informer_nas`` at ``revision`` as the package ``informer_nas_baseline``."""
    archive = subprocess.run(["git", "archive", revision, "src/informer_nas"], cwd=REPOSITORY,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BASELINE_PACKAGE
    (into / "src" / "informer_nas").rename(package)
    for source in package.rglob("*.py"):  # its imports of itself, renamed with it
        text = source.read_text(encoding="utf-8")
        source.write_text(text.replace("informer_nas.", f"{BASELINE_PACKAGE}.")
                          .replace("import informer_nas\n", f"import {BASELINE_PACKAGE}\n"),
                          encoding="utf-8")


def trainer(package: str, name: str, threads: int) -> Any:
    """The real trainer of ``package`` for a named config, on CPU, in training mode."""
    config_module = importlib.import_module(f"{package}.informer.config")
    training_module = importlib.import_module(f"{package}.informer.training")
    config = named_config(name).to_dict()
    config["training"].update(device="cpu", num_threads=threads)
    built = training_module.Trainer(config_module.InformerConfig.model_validate(config))
    built.model.train()
    return built


def alternate(trainers: list[Any], steps: int, warmup: int) -> list[tuple[float, float]]:
    """Median (wall, CPU) seconds of each trainer's step, the trainers taking turns."""
    sources = [batches(built) for built in trainers]
    for built, source in zip(trainers, sources, strict=True):
        for _ in range(warmup):
            built.train_step(next(source))
    walls: list[list[float]] = [[] for _ in trainers]
    cpus: list[list[float]] = [[] for _ in trainers]
    for _ in range(steps):
        for index, (built, source) in enumerate(zip(trainers, sources, strict=True)):
            batch = next(source)
            cpu, wall = time.process_time(), time.perf_counter()
            built.train_step(batch)
            walls[index].append(time.perf_counter() - wall)
            cpus[index].append(time.process_time() - cpu)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus,
                                                                         strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare against")
    parser.add_argument("--config", choices=("small", "paper"), default="small")
    parser.add_argument("--steps", type=int, default=60, help="steps of each tree per repeat")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeats (fresh trainers each time), one line each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        extract_baseline(args.baseline, Path(temporary))
        sys.path.insert(0, temporary)
        print(f"{args.config} config, {args.threads} threads: baseline {args.baseline} against "
              f"the working tree, {args.steps} alternating steps each")
        for repeat in range(args.repeats):
            pair = [trainer(BASELINE_PACKAGE, args.config, args.threads),
                    trainer("informer_nas", args.config, args.threads)]
            (old_wall, old_cpu), (new_wall, new_cpu) = alternate(pair, args.steps, args.warmup)
            print(f"repeat {repeat + 1}: baseline {old_wall * 1e3:.2f} ms, working tree "
                  f"{new_wall * 1e3:.2f} ms per step, baseline / working tree "
                  f"{old_wall / new_wall:.3f} (CPU {old_cpu / new_cpu:.3f})")


if __name__ == "__main__":
    main()
