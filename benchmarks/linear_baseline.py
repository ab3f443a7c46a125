"""The linear baseline of issue 7's task: RevIN and one linear map over time (RLinear).

What a user could train instead of searching Informer: each input window is normalised per
channel (RevIN), one ``seq_len -> pred_len`` linear map shared by every channel forecasts
it, and the forecast is mapped back (Li et al., "Revisiting long-term time series
forecasting", 2023). It uses the package's data pipeline (same split, scaler and windows as
the trainer), its ``RevIN`` and ``TimeLinear`` (the map ``model.linear_skip`` adds to
Informer), and the package's ``Trainer``: Adam at a constant rate, early stopping on val MSE
with the best epoch reloaded, every val and test window scored on the standardised scale.
Seconds per seed on one CPU thread.

Usage::

    python benchmarks/linear_baseline.py                         # ETTh1 M, 96 -> 96, 3 seeds
    python benchmarks/linear_baseline.py --criterion L1Loss --pred-len 24
"""

from __future__ import annotations

import argparse

import torch
from accuracy import summary
from torch import Tensor, nn

from informer_nas.informer.config import InformerConfig
from informer_nas.informer.data import ETTData, load_dataset
from informer_nas.informer.revin import RevIN
from informer_nas.informer.training import CRITERIA, Trainer
from informer_nas.informer.trend import TimeLinear


class RLinear(nn.Module):
    """RevIN, then one linear map over time shared by the channels."""

    def __init__(self, seq_len: int, pred_len: int, n_channels: int) -> None:
        super().__init__()
        self.revin = RevIN(n_targets=n_channels)
        self.linear = TimeLinear(seq_len, pred_len)

    def forward(self, x_enc: Tensor, x_mark_enc: Tensor | None = None,
                x_dec: Tensor | None = None, x_mark_dec: Tensor | None = None) -> Tensor:
        """(B, seq_len, C) -> (B, pred_len, C); called as Informer is, only the window used."""
        empty = x_enc[:, :0]
        normalised, _, stats = self.revin.normalise(x_enc, empty, 0)
        forecast: Tensor = self.revin.denormalise(self.linear(normalised), stats)
        return forecast


def baseline_config(args: argparse.Namespace, seed: int) -> InformerConfig:
    """The data and training sections the baseline trains with (its model section unused)."""
    config = InformerConfig().to_dict()
    config["data"].update(path=args.data, features="M", seq_len=args.seq_len,
                          label_len=min(48, args.seq_len), pred_len=args.pred_len,
                          batch_size=args.batch_size)
    config["training"].update(
        optimizer_class="Adam", optimizer_params={"lr": args.lr}, scheduler_class="none",
        criterion_class=args.criterion, max_epochs=args.epochs, patience=args.patience,
        seed=seed, num_threads=args.threads, device="cpu",
    )
    return InformerConfig.model_validate(config)


def train_seed(args: argparse.Namespace, seed: int, data: ETTData) -> dict[str, float | int]:
    """One training by the package's trainer; the metrics of the best val-MSE epoch."""
    config = baseline_config(args, seed)
    torch.manual_seed(seed)
    model = RLinear(args.seq_len, args.pred_len, data.c_out)
    result = Trainer(config, data, model=model).fit()
    if result.status != "ok" or result.val is None or result.test is None:
        raise SystemExit(f"seed {seed}: training ended {result.status}: {result.reason}")
    return {"epoch": result.best_epoch or 0, "val_mse": result.val.mse,
            "test_mse": result.test.mse, "test_mae": result.test.mae,
            "seconds": result.train_seconds}


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
    data = load_dataset(baseline_config(args, seed=0).data)
    runs = {int(seed): train_seed(args, int(seed), data) for seed in args.seeds.split(",")}
    print(f"RLinear, seq_len {args.seq_len} -> pred_len {args.pred_len}, {args.criterion}, "
          f"lr {args.lr}, batch {args.batch_size}, <= {args.epochs} epochs")
    print("| seed | best epoch | val MSE | test MSE | test MAE | seconds |")
    print("|---|---|---|---|---|---|")
    for seed, run in runs.items():
        print(f"| {seed} | {run['epoch']} | {run['val_mse']:.4f} | {run['test_mse']:.4f} "
              f"| {run['test_mae']:.4f} | {run['seconds']:.0f} |")
    print(f"| mean ± std | | {summary([float(r['val_mse']) for r in runs.values()])} "
          f"| {summary([float(r['test_mse']) for r in runs.values()])} "
          f"| {summary([float(r['test_mae']) for r in runs.values()])} | |")


if __name__ == "__main__":
    main()
