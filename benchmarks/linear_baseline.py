"""The linear baseline of issue 7's task: RevIN and one linear map over time (RLinear).

What a user could train instead of searching Informer: each input window is normalised per
channel (RevIN), one ``seq_len -> pred_len`` linear map shared by every channel forecasts
it, and the forecast is mapped back (Li et al., "Revisiting long-term time series
forecasting", 2023). It uses the package's data pipeline (same split, scaler and windows as
the trainer), its ``RevIN`` and ``TimeLinear`` (the map ``model.linear_skip`` adds to
Informer), Adam, early stopping on val MSE with the best epoch kept, and scores every val
and test window on the standardised scale. Seconds per seed on one CPU thread.

Usage::

    python benchmarks/linear_baseline.py                         # ETTh1 M, 96 -> 96, 3 seeds
    python benchmarks/linear_baseline.py --criterion L1Loss --pred-len 24
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from accuracy import summary
from torch import Tensor, nn

from informer_nas.informer.config import InformerConfig
from informer_nas.informer.data import WindowSet, load_dataset
from informer_nas.informer.revin import RevIN
from informer_nas.informer.trend import TimeLinear

CRITERIA = {"MSELoss": nn.MSELoss, "L1Loss": nn.L1Loss, "HuberLoss": nn.HuberLoss}


class RLinear(nn.Module):
    """RevIN, then one linear map over time shared by the channels."""

    def __init__(self, seq_len: int, pred_len: int, n_channels: int) -> None:
        super().__init__()
        self.revin = RevIN(n_targets=n_channels)
        self.linear = TimeLinear(seq_len, pred_len)

    def forward(self, x_enc: Tensor) -> Tensor:
        """(B, seq_len, C) -> (B, pred_len, C)."""
        empty = x_enc[:, :0]
        normalised, _, stats = self.revin.normalise(x_enc, empty, 0)
        forecast: Tensor = self.revin.denormalise(self.linear(normalised), stats)
        return forecast


def scores(model: RLinear, windows: WindowSet) -> tuple[float, float]:
    """MSE and MAE over every window of a split."""
    squared = absolute = count = 0.0
    with torch.no_grad():
        for batch in windows.batches(512):
            error = model(batch.x_enc) - batch.y
            squared += float(error.pow(2).sum())
            absolute += float(error.abs().sum())
            count += error.numel()
    return squared / count, absolute / count


def train_seed(args: argparse.Namespace, seed: int) -> dict[str, float | int]:
    """One training; the metrics of the epoch with the best val MSE."""
    config = InformerConfig().to_dict()
    config["data"].update(path=args.data, features="M", seq_len=args.seq_len,
                          label_len=min(48, args.seq_len), pred_len=args.pred_len)
    data = load_dataset(InformerConfig.model_validate(config).data)
    torch.manual_seed(seed)
    model = RLinear(args.seq_len, args.pred_len, data.c_out)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    criterion = CRITERIA[args.criterion]()
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    best: dict[str, float | int] = {}
    best_state: dict[str, Tensor] = {}
    for epoch in range(1, args.epochs + 1):
        for batch in data.train.batches(args.batch_size, shuffle=True, generator=generator,
                                        drop_last=True):
            optimizer.zero_grad()
            criterion(model(batch.x_enc), batch.y).backward()
            optimizer.step()
        val_mse, _ = scores(model, data.val)
        if not best or val_mse < best["val_mse"]:
            best, best_state = {"epoch": epoch, "val_mse": val_mse}, copy.deepcopy(
                model.state_dict())
        elif epoch - int(best["epoch"]) >= args.patience:
            break
    model.load_state_dict(best_state)
    best["test_mse"], best["test_mae"] = scores(model, data.test)
    best["seconds"] = time.perf_counter() - started
    return best


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
    torch.set_num_threads(args.threads)
    runs = {int(seed): train_seed(args, int(seed)) for seed in args.seeds.split(",")}
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
