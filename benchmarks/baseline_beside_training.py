"""The report's linear baseline trained alone and beside a running training, per thread count.

``nas report`` trains its linear baseline (RLinear, ``informer_nas.informer.baseline``) in
the report's own process. A session's training may be running at the same time in another
process; this measures what that costs. For each thread count, the baseline is trained
alone, then again while a trainer subprocess (``python -m informer_nas.informer.train``,
the same config given many epochs, default threads) trains beside it; the wall seconds are
printed as a markdown table.

Usage::

    python benchmarks/baseline_beside_training.py                     # quick preset
    python benchmarks/baseline_beside_training.py \
        --config-file nas-workspace/runs/run_0001/config_used.py

Run it alone on the machine: the point is two trainings on the same cores, not three.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from informer_nas.errors import ConfigError
from informer_nas.informer.baseline import REPORT_MIN_STEPS, baseline_config, train_baseline
from informer_nas.informer.config import InformerConfig, load_config
from informer_nas.informer.presets import preset_config


def baseline_seconds(config: InformerConfig, threads: int) -> float:
    """Wall seconds of the report's baseline training on ``threads`` threads."""
    started = time.perf_counter()
    train_baseline(baseline_config(config, num_threads=threads), min_steps=REPORT_MIN_STEPS)
    return time.perf_counter() - started


def start_training(config: InformerConfig, folder: Path) -> subprocess.Popen[bytes]:
    """A trainer subprocess on ``config`` (long enough to outlast the measurement), once it
    has taken its first step."""
    values = config.to_dict()
    values["training"].update(max_epochs=1000, patience=1000, num_threads=None)
    config_file = folder / "config.py"
    config_file.write_text(f"CONFIG = {values!r}\n", encoding="utf-8")
    events = folder / "events.jsonl"
    with events.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "informer_nas.informer.train", "--config", str(config_file),
             "--run-dir", str(folder / "run")], stdout=sink, stderr=subprocess.DEVNULL)
    while process.poll() is None:
        lines = events.read_text(encoding="utf-8").splitlines()
        if any(json.loads(line).get("event") == "step" for line in lines if line.strip()):
            return process
        time.sleep(0.2)
    raise SystemExit(f"the background training ended early (exit {process.returncode})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", type=Path, default=None,
                        help="the incumbent's config (default: the quick preset)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config_file) if args.config_file else preset_config("quick")
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    counts = [int(value) for value in args.threads.split(",")]
    alone = {threads: baseline_seconds(config, threads) for threads in counts}
    beside = {}
    with tempfile.TemporaryDirectory() as folder:
        process = start_training(config, Path(folder))
        try:
            for threads in counts:
                beside[threads] = baseline_seconds(config, threads)
        finally:
            process.terminate()
            process.wait(timeout=60)
    print("| baseline threads | alone (s) | beside a training (s) |")
    print("|---|---|---|")
    for threads in counts:
        print(f"| {threads} | {alone[threads]:.1f} | {beside[threads]:.1f} |")


if __name__ == "__main__":
    main()
