"""Test MSE / MAE of one config over several seeds (mean ± sample std), via the trainer.

Each seed is one run of the real trainer subprocess
(``python -m informer_nas.informer.train``), into ``--out/<name>/seed_<n>``; the numbers
come from its ``metrics.json``. Prints a markdown table.

Usage::

    python benchmarks/accuracy.py --config small                 # 3 seeds, full training
    python benchmarks/accuracy.py --config-file my_config.py --seeds 1,2,3
    python benchmarks/accuracy.py --config-file my_config.py --criterion L1Loss --decomp
    python benchmarks/accuracy.py --config-file my_config.py --linear-skip
    python benchmarks/accuracy.py --config tiny --max-epochs 1   # smoke test (seconds)

``--config`` takes ``small`` (d_model 64, 4 heads, d_ff 256, M 96 -> 24, batch 32), ``paper``
(the reference defaults) or a preset name (``tiny``, ``quick``). ``small`` and ``paper``
score every window; presets keep their caps. Published Informer numbers on ETTh1 (test,
standardised): multivariate 24: MSE 0.577, MAE 0.549; univariate 24: 0.098 / 0.247.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from train_throughput import named_config

from informer_nas.informer.config import InformerConfig, format_validation_error, load_config


def build_config(args: argparse.Namespace) -> InformerConfig:
    """The config named or given, with the command line's overrides."""
    base = load_config(Path(args.config_file)) if args.config_file else named_config(args.config)
    config = base.to_dict()
    overrides = {"max_epochs": args.max_epochs, "max_train_windows": args.max_train_windows,
                 "max_eval_windows": args.max_eval_windows, "num_threads": args.threads,
                 "device": args.device, "criterion_class": args.criterion}
    config["training"].update({key: value for key, value in overrides.items() if value})
    for option in ("decomp", "linear_skip"):
        if getattr(args, option):
            config["model"][option] = True
    return InformerConfig.model_validate(config)


def train_seed(config_path: Path, run_dir: Path, seed: int) -> dict[str, Any]:
    """One trainer subprocess; returns its metrics.json (stdout events are discarded)."""
    command = [sys.executable, "-m", "informer_nas.informer.train", "--config",
               str(config_path), "--run-dir", str(run_dir), "--seed", str(seed)]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["wall_seconds"] = time.perf_counter() - started
    if done.returncode != 0:
        print(f"seed {seed}: {metrics['status']} ({metrics['reason']})", file=sys.stderr)
    return metrics


def summary(values: list[float]) -> str:
    """``mean ± std`` (sample std; 0 for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {spread:.4f}"


def markdown_table(name: str, runs: list[dict[str, Any]]) -> str:
    lines = ["| config | seed | status | best epoch | epochs | val MSE | test MSE | test MAE "
             "| seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {name} | {run['seed']} | {run['status']} | {run['best_epoch']} "
            f"| {run['epochs_run']} | {_number(run['val_mse'])} | {_number(run['test_mse'])} "
            f"| {_number(run['test_mae'])} | {run['wall_seconds']:.0f} |"
        )
    ok = [run for run in runs if run["status"] == "ok"]
    if ok:
        lines.append(
            f"| {name} | mean ± std ({len(ok)} ok) | | | | {summary([r['val_mse'] for r in ok])} "
            f"| {summary([r['test_mse'] for r in ok])} | {summary([r['test_mae'] for r in ok])} | |"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", default="small", help="small, paper, tiny or quick")
    source.add_argument("--config-file", default=None, help="a config file (CONFIG = {...})")
    parser.add_argument("--seeds", default="2021,2022,2023", help="comma-separated seeds")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--max-train-windows", type=int, default=None)
    parser.add_argument("--max-eval-windows", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--criterion", default=None,
                        help="training loss instead of the config's (MSELoss, L1Loss, ...)")
    parser.add_argument("--decomp", action="store_true",
                        help="turn on model.decomp (trend decomposition)")
    parser.add_argument("--linear-skip", action="store_true",
                        help="turn on model.linear_skip (a linear forecast Informer corrects)")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=None, help="run directories (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = build_config(args)
    except ValidationError as exc:
        raise SystemExit(f"accuracy.py: invalid config: {format_validation_error(exc)}; "
                         "fix the config file or the option") from None
    name = Path(args.config_file).stem if args.config_file else args.config
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="accuracy-"))
    root = out / name
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.py"
    config_path.write_text(f"CONFIG = {config.to_dict()!r}\n", encoding="utf-8")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = [train_seed(config_path, root / f"seed_{seed}", seed) for seed in seeds]
    print(markdown_table(name, runs))
    print(f"\nrun directories: {root}")


if __name__ == "__main__":
    main()
