"""The Informer model: parameter counts, shapes for every option, RevIN, errors."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from informer_nas.errors import ConfigError
from informer_nas.informer.config import ModelSection
from informer_nas.informer.embedding import DataEmbedding, circular_conv3
from informer_nas.informer.model import DistillingLayer, Informer, count_parameters
from informer_nas.informer.trend import moving_average

torch.set_num_threads(1)

SEQ_LEN, LABEL_LEN, PRED_LEN, BATCH = 16, 8, 4, 2
TINY = {"d_model": 8, "n_heads": 2, "d_ff": 16, "factor": 2}


def _marks(length: int, freq: str, embed: str, generator: torch.Generator) -> torch.Tensor:
    n_marks = 4 if freq == "h" else 5
    if embed == "timeF":
        return torch.rand(BATCH, length, n_marks, generator=generator) - 0.5
    highs = [13, 32, 7, 24, 4][:n_marks]  # month, day, weekday, hour, minute // 15
    lows = [1, 1, 0, 0, 0][:n_marks]
    columns = [torch.randint(lo, hi, (BATCH, length), generator=generator)
               for lo, hi in zip(lows, highs, strict=True)]
    return torch.stack(columns, dim=-1).float()


def _batch(channels: int = 7, freq: str = "h", embed: str = "timeF",
           seq_len: int = SEQ_LEN) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x_enc = torch.randn(BATCH, seq_len, channels, generator=generator)
    zeros = torch.zeros(BATCH, PRED_LEN, channels)
    x_dec = torch.cat([x_enc[:, -LABEL_LEN:], zeros], dim=1)
    return (x_enc, _marks(seq_len, freq, embed, generator), x_dec,
            _marks(LABEL_LEN + PRED_LEN, freq, embed, generator))


def _model(channels: tuple[int, int, int] = (7, 7, 7), freq: str = "h", **changes: Any) -> Informer:
    torch.manual_seed(0)
    return Informer(ModelSection(**{**TINY, **changes}), *channels, pred_len=PRED_LEN, freq=freq,
                    seq_len=SEQ_LEN)


@pytest.mark.parametrize(
    ("changes", "channels", "expected"),
    [
        ({}, (7, 7, 7), 11_330_055),  # the paper's ETTh1 M model
        ({}, (1, 1, 1), 11_308_545),  # features S
        ({}, (7, 7, 1), 11_326_977),  # features MS
        ({"distil": False}, (7, 7, 7), 10_542_087),  # no distilling layer
        ({"embed": "fixed"}, (7, 7, 7), 11_324_935),  # calendar tables are buffers
    ],
    ids=["M", "S", "MS", "no-distil", "fixed-embed"],
)
def test_parameter_count_matches_the_reference(changes: dict[str, Any],
                                               channels: tuple[int, int, int],
                                               expected: int) -> None:
    model = Informer(ModelSection(**changes), *channels, pred_len=24, freq="h")
    assert count_parameters(model) == expected


OPTIONS: list[dict[str, Any]] = [
    {"attn": "prob"}, {"attn": "full"},
    {"embed": "fixed"}, {"embed": "learned"},
    {"distil": False}, {"mix": False}, {"revin": True}, {"activation": "relu"},
    {"e_layers": 1}, {"e_layers": 3}, {"e_layers": 3, "distil": False},
    {"d_layers": 2}, {"d_layers": 2, "attn": "full", "mix": False},
    {"decomp": True}, {"decomp": True, "revin": True, "moving_avg": 5},
    {"linear_skip": True}, {"linear_skip": True, "revin": True, "decomp": True},
]


def _option_id(changes: dict[str, Any]) -> str:
    return "-".join(f"{key}={value}" for key, value in changes.items())


@pytest.mark.parametrize("freq", ["h", "t"])
@pytest.mark.parametrize("changes", OPTIONS, ids=_option_id)
def test_forward_and_backward_shapes(changes: dict[str, Any], freq: str) -> None:
    # every option, both frequencies: (B, pred_len, c_out), finite, trainable
    model = _model(freq=freq, **changes).train()
    out = model(*_batch(freq=freq, embed=changes.get("embed", "timeF")))
    assert out.shape == (BATCH, PRED_LEN, 7)
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("attn", "embed"),
                         list(itertools.product(["prob", "full"], ["timeF", "fixed", "learned"])))
def test_univariate_and_ms_outputs(attn: str, embed: str) -> None:
    for channels in [(1, 1, 1), (3, 3, 1)]:
        model = _model(channels, attn=attn, embed=embed).eval()
        out = model(*_batch(channels=channels[0], embed=embed))
        assert out.shape == (BATCH, PRED_LEN, 1)


def test_seeded_training_forward_repeats() -> None:
    model = _model(dropout=0.3).train()
    batch = _batch()
    torch.manual_seed(11)
    first = model(*batch)
    torch.manual_seed(11)
    torch.testing.assert_close(model(*batch), first)


@pytest.mark.parametrize("channels", [(3, 3, 3), (3, 3, 1)], ids=["M", "MS-target-last"])
def test_revin_makes_the_forecast_follow_the_window_scale(channels: tuple[int, int, int]) -> None:
    # normalised inputs are unchanged by x -> 3 x + 5, so the forecast must become 3 y + 5
    model = _model(channels, attn="full", revin=True).eval()
    x_enc, x_mark_enc, x_dec, x_mark_dec = _batch(channels=channels[0])
    x_dec_scaled = torch.cat([3 * x_dec[:, :LABEL_LEN] + 5, x_dec[:, LABEL_LEN:]], dim=1)
    plain = model(x_enc, x_mark_enc, x_dec, x_mark_dec)
    scaled = model(3 * x_enc + 5, x_mark_enc, x_dec_scaled, x_mark_dec)
    torch.testing.assert_close(scaled, 3 * plain + 5, rtol=1e-4, atol=1e-4)


def test_moving_average_keeps_a_straight_line_and_a_constant() -> None:
    steps = torch.arange(20.0).view(1, 20, 1)
    series = torch.cat([2 * steps + 1, torch.full_like(steps, 3.0)], dim=-1)  # (1, 20, 2)
    trend = moving_average(series, kernel=5)
    assert trend.shape == series.shape
    torch.testing.assert_close(trend[:, 2:-2], series[:, 2:-2])  # centred: exact inside
    torch.testing.assert_close(trend[..., 1], series[..., 1])  # ends padded by repetition
    assert trend[0, 0, 0] > series[0, 0, 0] and trend[0, -1, 0] < series[0, -1, 0]


@pytest.mark.parametrize("channels", [(3, 3, 3), (3, 3, 1)], ids=["M", "MS-target-last"])
def test_decomp_adds_the_linear_trend_forecast(channels: tuple[int, int, int]) -> None:
    # Informer's own output silenced: the forecast is the trend head's, which starts as the
    # mean of each channel's moving-average trend (the target is the last channel)
    model = _model(channels, attn="full", decomp=True, moving_avg=3).eval()
    torch.nn.init.zeros_(model.projection.weight)
    torch.nn.init.zeros_(model.projection.bias)
    x_enc, x_mark_enc, x_dec, x_mark_dec = _batch(channels=channels[0])
    forecast = model(x_enc, x_mark_enc, x_dec, x_mark_dec)
    mean_trend = moving_average(x_enc, 3).mean(dim=1, keepdim=True)[..., -channels[2]:]
    torch.testing.assert_close(forecast, mean_trend.expand(BATCH, PRED_LEN, -1))


@pytest.mark.parametrize("channels", [(3, 3, 3), (3, 3, 1)], ids=["M", "MS-target-last"])
@pytest.mark.parametrize("revin", [False, True])
def test_untrained_linear_skip_is_the_window_mean_forecast(channels: tuple[int, int, int],
                                                           revin: bool) -> None:
    # Informer's projection starts at zero: the forecast is the linear map's, which starts as
    # each channel's window mean (the target is the last channel)
    model = _model(channels, linear_skip=True, revin=revin).eval()
    x_enc, x_mark_enc, x_dec, x_mark_dec = _batch(channels=channels[0])
    forecast = model(x_enc, x_mark_enc, x_dec, x_mark_dec)
    mean = x_enc.mean(dim=1, keepdim=True)[..., -channels[2]:]
    torch.testing.assert_close(forecast, mean.expand(BATCH, PRED_LEN, -1), rtol=1e-5,
                               atol=1e-5)


def test_linear_skip_lets_informer_learn_the_rest() -> None:
    # one optimiser step on a target the linear map cannot give moves Informer's projection
    # off zero, so Informer's forecast joins the linear one
    model = _model(linear_skip=True).train()
    x_enc, x_mark_enc, x_dec, x_mark_dec = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = (model(x_enc, x_mark_enc, x_dec, x_mark_dec) - 1.0).pow(2).mean()
    loss.backward()
    optimizer.step()
    assert model.projection.weight.abs().sum() > 0
    model.eval()
    linear_only = model.skip(x_enc)
    assert not torch.allclose(model(x_enc, x_mark_enc, x_dec, x_mark_dec), linear_only)


@pytest.mark.parametrize("option", ["decomp", "linear_skip"])
def test_linear_heads_add_only_their_parameters(option: str) -> None:
    plain, extended = _model(), _model(**{option: True})
    assert count_parameters(extended) - count_parameters(plain) == SEQ_LEN * PRED_LEN + PRED_LEN


@pytest.mark.parametrize("option", ["decomp", "linear_skip"])
def test_linear_heads_without_the_look_back_length_are_refused(option: str) -> None:
    with pytest.raises(ConfigError, match=f"model.{option} needs the look-back length"):
        Informer(ModelSection(**TINY, **{option: True}), 7, 7, 7, pred_len=PRED_LEN)


def test_distilling_halves_the_length() -> None:
    layer = DistillingLayer(8).eval()
    assert layer(torch.randn(2, 96, 8)).shape == (2, 48, 8)
    assert layer(torch.randn(2, 15, 8)).shape == (2, 8, 8)


def test_circular_conv_equals_conv1d_with_circular_padding() -> None:
    conv = torch.nn.Conv1d(5, 6, kernel_size=3, padding=1, padding_mode="circular")
    x = torch.randn(2, 9, 5)
    torch.testing.assert_close(circular_conv3(x, conv), conv(x.transpose(1, 2)).transpose(1, 2))


def test_embedding_buffers_are_not_parameters() -> None:
    fixed = DataEmbedding(7, 16, "fixed", "t", dropout=0.0)
    learned = DataEmbedding(7, 16, "learned", "t", dropout=0.0)
    token = 7 * 16 * 3 + 16
    assert count_parameters(fixed) == token
    assert count_parameters(learned) == token + (4 + 24 + 7 + 32 + 13) * 16
    assert "position_embedding.table" not in fixed.state_dict()


@pytest.mark.parametrize(
    ("channels", "freq", "changes", "message"),
    [
        ((7, 7, 7), "d", {}, "data.freq"),  # unknown frequency
        ((7, 3, 7), "h", {"revin": True}, "model.revin"),  # RevIN needs dec_in == enc_in
        ((7, 7, 0), "h", {}, "c_out"),  # no output channel
        ((7, 3, 7), "h", {"decomp": True}, "model.decomp"),  # decomp needs dec_in == enc_in
        ((3, 3, 7), "h", {"linear_skip": True}, "model.linear_skip"),  # c_out > enc_in
    ],
    ids=["freq", "revin-channels", "c_out", "decomp-channels", "skip-channels"],
)
def test_bad_sizes_raise_config_error(channels: tuple[int, int, int], freq: str,
                                      changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _model(channels, freq=freq, **changes)


def test_too_long_sequence_raises_config_error() -> None:
    embedding = DataEmbedding(1, 4, "timeF", "h", dropout=0.0)
    with pytest.raises(ConfigError, match="5000"):
        embedding(torch.zeros(1, 5001, 1), torch.zeros(1, 5001, 4))
