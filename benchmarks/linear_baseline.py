"""The linear baseline of issue 7's task: RevIN and one linear map over time (RLinear).

What a user could train instead of searching Informer: each input window is normalised per
channel (RevIN), one ``seq_len -> pred_len`` linear map shared by every channel forecasts
it, and the forecast is mapped back (Li et al., "Revisiting long-term time series
forecasting", 2023). It uses the package's data pipeline (same split, scaler and windows as
the trainer) and its baseline (``informer_nas.informer.baseline``, the one ``nas report``
sets against the incumbent): Adam at a constant rate, early stopping on val MSE with the best
epoch reloaded, every val and test window scored on the standardised scale. Seconds per seed
on one CPU thread.

Usage::

    python benchmarks/linear_baseline.py                         # ETTh1 M, 96 -> 96, 3 seeds
    python benchmarks/linear_baseline.py --criterion L1Loss --pred-len 24
"""

from __future__ import annotations

import argparse

from accuracy import summary

from informer_nas.informer.baseline import BaselineResult, baseline_config, train_baseline
from informer_nas.informer.config import InformerConfig
from informer_nas.informer.data import load_dataset
from informer_nas.informer.trainer_setup import CRITERIA
from informer_nas.informer.windows import ETTData


def task_config(args: argparse.Namespace) -> InformerConfig:
    """The default config with the task of the command line (ETTh1 M, 96 -> 96 by default)."""
    config = InformerConfig().to_dict()
    config["data"].update(path=args.data, features="M", seq_len=args.seq_len,
                          label_len=min(48, args.seq_len), pred_len=args.pred_len,
                          batch_size=args.batch_size)
    return InformerConfig.model_validate(config)


def train_seed(args: argparse.Namespace, seed: int, data: ETTData) -> BaselineResult:
    """One training of the package's baseline with the command line's settings."""
    config = baseline_config(task_config(args), lr=args.lr, max_epochs=args.epochs,
                             patience=args.patience, criterion=args.criterion, seed=seed,
                             num_threads=args.threads)
    return train_baseline(config, data)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="CSV path (default: the bundled ETTh1)")
    parser.add_argument("--seq-len", type=int, default=96)
    parser.add_argument("--pred-len", type=int, default=96)
    parser.add_argument("--criterion", default="MSELoss", choices=sorted(CRITERIA))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_dataset(task_config(args).data)
    runs = {int(seed): train_seed(args, int(seed), data) for seed in args.seeds.split(",")}
    print(f"RLinear, seq_len {args.seq_len} -> pred_len {args.pred_len}, {args.criterion}, "
          f"lr {args.lr}, batch {args.batch_size}, <= {args.epochs} epochs")
    print("| seed | best epoch | val MSE | test MSE | test MAE | seconds |")
    print("|---|---|---|---|---|---|")
    for seed, run in runs.items():
        print(f"| {seed} | {run.best_epoch} | {run.val_mse:.4f} | {run.test_mse:.4f} "
              f"| {run.test_mae:.4f} | {run.train_seconds:.0f} |")
    print(f"| mean ± std | | {summary([r.val_mse for r in runs.values()])} "
          f"| {summary([r.test_mse for r in runs.values()])} "
          f"| {summary([r.test_mae for r in runs.values()])} | |")


if __name__ == "__main__":
    main()
