"""The Informer forecaster (Zhou et al., AAAI 2021), blocks in dependency order.

Faithful to the reference implementation (zhouhaoyi/Informer2020, after May 2021): the same
parameters (11,330,055 for the paper's ETTh1 M model), created in the same order (a seeded
model starts from the reference's initial weights), the same ProbSparse algorithm, post-norm
layers, distilling between encoder layers, a generative decoder. Attention and embeddings live
in ``attention.py`` and ``embedding.py``; optional RevIN is in ``revin.py``, the optional
trend decomposition in ``trend.py``.

Differences are in how, not what, is computed: kernel-1 and kernel-3 convolutions run as
matrix products on time-major tensors, the decoder's last layer computes only the rows that
are returned (every operation after its self-attention is row-wise) and, with the reference's
head mixing, only the heads those rows come from; dropout on CPU draws the dropped
positions, not a mask (``dropout.drop_positions``); in CPU training the feed-forward block is
one autograd function that crosses its hidden activation fewer times (``feed_forward.py``), and
where a C compiler is available GELU, dropout and ProbSparse attention run as native kernels
(``native/``; the same values to float rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from informer_nas.errors import ConfigError
from informer_nas.informer.attention import AttentionLayer, FullAttention, ProbAttention
from informer_nas.informer.config import ModelSection
from informer_nas.informer.dropout import Dropout
from informer_nas.informer.embedding import DataEmbedding, circular_conv3, n_time_marks
from informer_nas.informer.feed_forward import FeedForward
from informer_nas.informer.revin import RevIN
from informer_nas.informer.trend import TimeLinear, TrendHead


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers such as fixed sinusoid tables are not counted)."""
    return sum(p.numel() for p in module.parameters())


class DistillingLayer(nn.Module):
    """Conv1d (k=3, circular) + BatchNorm + ELU + MaxPool(3, stride 2): halves the length."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.down_conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1,
                                   padding_mode="circular")
        self.norm = nn.BatchNorm1d(d_model)
        self.activation = nn.ELU()
        self.max_pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, ceil(L / 2), d_model)."""
        batch, length, d_model = x.shape
        x = circular_conv3(x, self.down_conv)
        # BatchNorm over (B * L) rows of channels = BatchNorm1d over (B, C, L)
        x = self.activation(self.norm(x.reshape(batch * length, d_model)))
        x = self.max_pool(x.view(batch, length, d_model).transpose(1, 2))
        return x.transpose(1, 2).contiguous()


class EncoderLayer(nn.Module):
    """Post-norm self-attention + feed-forward."""

    def __init__(self, attention: AttentionLayer, d_model: int, d_ff: int, dropout: float,
                 activation: str) -> None:
        super().__init__()
        self.attention = attention
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        x = self.norm1(x + self.dropout(self.attention(x, x, x)))
        return self.norm2(x + self.feed_forward(x))  # type: ignore[no-any-return]


class Encoder(nn.Module):
    """Encoder layers with distilling layers between them, then a final LayerNorm."""

    def __init__(self, layers: list[EncoderLayer], distilling: list[DistillingLayer],
                 d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.distilling = nn.ModuleList(distilling)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L', d_model), L' = L halved once per distilling layer."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.distilling):
                x = self.distilling[index](x)
        return self.norm(x)  # type: ignore[no-any-return]


class DecoderLayer(nn.Module):
    """Post-norm masked self-attention, cross-attention to the encoder, feed-forward."""

    def __init__(self, self_attention: AttentionLayer, cross_attention: AttentionLayer,
                 d_model: int, d_ff: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, n_out: int | None = None) -> Tensor:
        """(B, L, d_model), encoder output (B, S, d_model) -> (B, n_out or L, d_model).

        Every step is row-wise after the self-attention, so ``n_out`` (keep the last
        ``n_out`` rows) skips work whose result is discarded; the kept rows are unchanged.
        """
        n_out = x.shape[1] if n_out is None else n_out
        attended = self.self_attention(x, x, x, n_out=n_out)
        x = self.norm1(x[:, x.shape[1] - n_out:] + self.dropout(attended))
        x = self.norm2(x + self.dropout(self.cross_attention(x, memory, memory)))
        return self.norm3(x + self.feed_forward(x))  # type: ignore[no-any-return]


class Decoder(nn.Module):
    """Decoder layers then a final LayerNorm."""

    def __init__(self, layers: list[DecoderLayer], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, memory: Tensor, n_out: int) -> Tensor:
        """(B, L, d_model), (B, S, d_model) -> the last ``n_out`` steps (B, n_out, d_model)."""
        for index, layer in enumerate(self.layers):
            x = layer(x, memory, n_out if index == len(self.layers) - 1 else None)
        return self.norm(x)  # type: ignore[no-any-return]


def _self_attention(cfg: ModelSection, is_masked: bool) -> nn.Module:
    if cfg.attn == "prob":
        return ProbAttention(is_masked, cfg.factor)
    return FullAttention(is_masked, cfg.dropout)


class Informer(nn.Module):
    """Informer: ProbSparse encoder with distilling and a one-pass generative decoder.

    Head mixing: the encoder never mixes (the reference after May 2021), the cross-attention
    never does; ``cfg.mix`` applies to the decoder self-attention (on by default, as in the
    reference).

    RevIN (``cfg.revin``): each input window is normalised per channel (parameter-free); the
    decoder's label part is normalised with the same statistics; the forecast is
    de-normalised. When ``c_out < enc_in`` (features MS) the forecast channels are taken to be
    the last ``c_out`` input channels (ETT's target OT is the last column), whose statistics
    de-normalise it.

    Decomposition (``cfg.decomp``, after RevIN's normalisation): the window's moving-average
    trend is forecast by ``TrendHead``; the encoder sees the seasonal remainder, and the
    decoder's label part has the same trend removed (it repeats the window's last
    ``label_len`` steps). The trend forecast of the last ``c_out`` channels is added to
    Informer's.

    Linear skip (``cfg.linear_skip``, after RevIN's normalisation, before the
    decomposition): a ``TimeLinear`` forecast of the whole window's last ``c_out`` channels
    is added to Informer's, and Informer's output projection starts at zero, so an untrained
    model is the linear forecaster and Informer learns what it misses.

    Args:
        cfg: the model section of the config.
        enc_in: encoder input channels.
        dec_in: decoder input channels.
        c_out: forecast channels.
        pred_len: forecast horizon; the last ``pred_len`` decoder steps are returned.
        freq: ``h`` or ``t``; sets the number of time-mark columns.
        seq_len: look-back length (needed by ``cfg.decomp`` and ``cfg.linear_skip`` only).
    """

    def __init__(self, cfg: ModelSection, enc_in: int, dec_in: int, c_out: int,
                 pred_len: int, freq: str = "h", seq_len: int | None = None) -> None:
        super().__init__()
        _check_sizes(cfg, enc_in, dec_in, c_out, pred_len, freq, seq_len)
        self.pred_len = pred_len
        self.revin = RevIN(n_targets=c_out) if cfg.revin else None
        self.c_out = c_out
        self.enc_embedding = DataEmbedding(enc_in, cfg.d_model, cfg.embed, freq, cfg.dropout)
        self.dec_embedding = DataEmbedding(dec_in, cfg.d_model, cfg.embed, freq, cfg.dropout)
        self.encoder = Encoder(
            [self._encoder_layer(cfg) for _ in range(cfg.e_layers)],
            [DistillingLayer(cfg.d_model) for _ in range(cfg.e_layers - 1)] if cfg.distil else [],
            cfg.d_model,
        )
        self.decoder = Decoder([self._decoder_layer(cfg) for _ in range(cfg.d_layers)],
                               cfg.d_model)
        self.projection = nn.Linear(cfg.d_model, c_out)
        self.trend = (TrendHead(seq_len, pred_len, cfg.moving_avg)
                      if cfg.decomp and seq_len is not None else None)
        self.skip = (TimeLinear(seq_len, pred_len)
                     if cfg.linear_skip and seq_len is not None else None)
        if self.skip is not None:
            nn.init.zeros_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)

    @staticmethod
    def _encoder_layer(cfg: ModelSection) -> EncoderLayer:
        attention = AttentionLayer(_self_attention(cfg, False), cfg.d_model, cfg.n_heads,
                                   mix=False)
        return EncoderLayer(attention, cfg.d_model, cfg.d_ff, cfg.dropout, cfg.activation)

    @staticmethod
    def _decoder_layer(cfg: ModelSection) -> DecoderLayer:
        self_attention = AttentionLayer(_self_attention(cfg, True), cfg.d_model, cfg.n_heads,
                                        mix=cfg.mix)
        cross_attention = AttentionLayer(FullAttention(False, cfg.dropout), cfg.d_model,
                                         cfg.n_heads, mix=False)
        return DecoderLayer(self_attention, cross_attention, cfg.d_model, cfg.d_ff,
                            cfg.dropout, cfg.activation)

    def forward(self, x_enc: Tensor, x_mark_enc: Tensor, x_dec: Tensor,
                x_mark_dec: Tensor) -> Tensor:
        """Forecast.

        Args:
            x_enc: (B, seq_len, enc_in) look-back window.
            x_mark_enc: (B, seq_len, n_mark) its time marks.
            x_dec: (B, label_len + pred_len, dec_in): last label_len observations, then zeros.
            x_mark_dec: (B, label_len + pred_len, n_mark) time marks of the decoder span.

        Returns:
            (B, pred_len, c_out) forecast.
        """
        label_len = x_dec.shape[1] - self.pred_len
        x_label = x_dec[:, :label_len]  # the observed part; the rest is zeros
        if self.revin is not None:
            x_enc, stats = self.revin.normalise(x_enc)
            x_label = stats.normalise(x_label)
        skip = None if self.skip is None else self.skip(x_enc[..., x_enc.shape[-1] - self.c_out:])
        if self.trend is not None:
            x_enc, trend = self.trend.decompose(x_enc)
            x_label = x_label - trend[:, trend.shape[1] - label_len:]
        if self.revin is not None or self.trend is not None:
            x_dec = torch.cat([x_label, x_dec[:, label_len:]], dim=1)
        memory = self.encoder(self.enc_embedding(x_enc, x_mark_enc))
        out = self.decoder(self.dec_embedding(x_dec, x_mark_dec), memory, self.pred_len)
        forecast = self.projection(out)  # (B, pred_len, c_out)
        if self.trend is not None:
            forecast = forecast + self.trend(trend)[..., trend.shape[-1] - self.c_out:]
        if skip is not None:
            forecast = forecast + skip
        if self.revin is not None:
            forecast = self.revin.denormalise(forecast, stats)
        return forecast  # type: ignore[no-any-return]


def _check_sizes(cfg: ModelSection, enc_in: int, dec_in: int, c_out: int, pred_len: int,
                 freq: str, seq_len: int | None) -> None:
    n_time_marks(freq)
    if cfg.d_model % cfg.n_heads:
        raise ConfigError(f"model.d_model ({cfg.d_model}) must be divisible by model.n_heads "
                          f"({cfg.n_heads}); change one of them")
    for name, value in (("enc_in", enc_in), ("dec_in", dec_in), ("c_out", c_out),
                        ("pred_len", pred_len)):
        if value < 1:
            raise ConfigError(f"Informer {name} must be >= 1, got {value}; check data.features")
    for option in ("revin", "decomp", "linear_skip"):  # read the forecast channels off the inputs
        if getattr(cfg, option) and (dec_in != enc_in or c_out > enc_in):
            raise ConfigError(
                f"model.{option} needs dec_in == enc_in and c_out <= enc_in, got enc_in "
                f"{enc_in}, dec_in {dec_in}, c_out {c_out}; set model.{option} to False"
            )
    for option in ("decomp", "linear_skip"):
        if getattr(cfg, option) and seq_len is None:
            raise ConfigError(f"model.{option} needs the look-back length (seq_len); pass it "
                              f"to Informer or set model.{option} to False")
