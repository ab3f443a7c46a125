"""ProbSparse and full attention, and the attention layer."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from informer_nas.informer import attention as attention_module
from informer_nas.informer.attention import (
    AttentionLayer,
    FullAttention,
    ProbAttention,
    sample_sizes,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("both_kernel_paths")  # native kernels and ATen alike

BATCH, HEADS, LENGTH, HEAD_DIM = 2, 3, 12, 4


def _qkv(length_q: int = LENGTH, length_k: int = LENGTH) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(BATCH, HEADS, length_q, HEAD_DIM, generator=generator)
    k = torch.randn(BATCH, HEADS, length_k, HEAD_DIM, generator=generator)
    v = torch.randn(BATCH, HEADS, length_k, HEAD_DIM, generator=generator)
    return q, k, v


def _reference_prob_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, factor: int,
                              is_masked: bool) -> torch.Tensor:
    """The paper's algorithm written plainly, drawing the key sample as the reference does."""
    batch, heads, length_q, head_dim = q.shape
    length_k = k.shape[2]
    n_keys = min(factor * math.ceil(math.log(length_k)), length_k)
    n_top = min(factor * math.ceil(math.log(length_q)), length_q)
    sample = torch.randint(length_k, (length_q, n_keys))
    k_sample = k[:, :, sample, :]  # (B, H, L_Q, U, E)
    sampled = torch.einsum("bhle,bhlue->bhlu", q, k_sample)
    sparsity = sampled.max(-1).values - sampled.sum(-1) / length_k
    top = sparsity.topk(n_top, sorted=False).indices
    if is_masked:
        context = v.cumsum(dim=2)
    else:
        context = v.mean(dim=2, keepdim=True).expand(batch, heads, length_q, head_dim).clone()
    for b in range(batch):
        for h in range(heads):
            for t in top[b, h].tolist():
                scores = q[b, h, t] @ k[b, h].T / math.sqrt(head_dim)
                if is_masked:
                    scores[t + 1:] = float("-inf")
                context[b, h, t] = torch.softmax(scores, -1) @ v[b, h]
    return context


@pytest.mark.parametrize(
    ("factor", "length_q", "length_k", "expected"),
    [
        (5, 96, 96, (25, 25)),  # the paper's setting: 5 * ceil(ln 96)
        (5, 72, 48, (20, 25)),  # U from L_K, u from L_Q
        (5, 8, 8, (8, 8)),  # both capped at the lengths
        (3, 1, 1, (1, 1)),  # length 1: at least one of each
    ],
    ids=["paper", "asymmetric", "capped", "length-1"],
)
def test_sample_sizes(factor: int, length_q: int, length_k: int,
                      expected: tuple[int, int]) -> None:
    assert sample_sizes(factor, length_q, length_k) == expected


@pytest.mark.parametrize("is_masked", [False, True], ids=["encoder", "decoder-masked"])
def test_prob_attention_equals_full_when_every_query_and_key_is_kept(is_masked: bool) -> None:
    # factor large enough that u = L_Q and U = L_K: ProbSparse is exact attention
    q, k, v = _qkv()
    prob = ProbAttention(is_masked, factor=100).eval()
    full = FullAttention(is_masked, dropout=0.0).eval()
    torch.testing.assert_close(prob(q, k, v), full(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_pairs", [None, 4], ids=["one-chunk", "chunks-of-4"])
@pytest.mark.parametrize("is_masked", [False, True], ids=["encoder", "decoder-masked"])
def test_prob_attention_matches_the_plain_algorithm(
        is_masked: bool, chunk_pairs: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    # factor 1 on 12 steps keeps u = 3 of 12 queries: sampling, M (sum / L_K) and lazy rows;
    # with chunks of 4 of the 6 (batch, head) pairs, the selection's scores come in a full
    # chunk, then a partial one
    if chunk_pairs is not None:
        monkeypatch.setattr(attention_module, "SCORE_CHUNK_FLOATS", chunk_pairs * LENGTH ** 2)
    q, k, v = _qkv()
    torch.manual_seed(7)
    expected = _reference_prob_attention(q, k, v, factor=1, is_masked=is_masked)
    torch.manual_seed(7)
    actual = ProbAttention(is_masked, factor=1)(q, k, v)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("is_masked", [False, True], ids=["encoder", "decoder-masked"])
def test_prob_attention_gradients_match_the_plain_algorithm(is_masked: bool) -> None:
    # kept queries are taken and put back by row index: the gradients must be the plain ones
    plain = functools.partial(_reference_prob_attention, factor=1, is_masked=is_masked)
    gradients = []
    for attention in (plain, ProbAttention(is_masked, factor=1)):
        q, k, v = (t.requires_grad_() for t in _qkv())
        torch.manual_seed(7)
        attention(q, k, v).pow(2).sum().backward()
        gradients.append([t.grad for t in (q, k, v)])
    for actual, expected in zip(gradients[1], gradients[0], strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("is_masked", [False, True], ids=["mean-of-v", "cumsum-of-v"])
def test_lazy_queries_get_mean_or_cumsum_of_values(is_masked: bool) -> None:
    q, k, v = _qkv()
    out = ProbAttention(is_masked, factor=1)(q, k, v)
    lazy = v.cumsum(dim=2) if is_masked else v.mean(dim=2, keepdim=True).expand_as(v)
    is_lazy_row = torch.isclose(out, lazy, atol=1e-6).all(dim=-1)  # (B, H, L)
    _, n_top = sample_sizes(1, LENGTH, LENGTH)
    assert (is_lazy_row.sum(dim=-1) >= LENGTH - n_top).all()


def test_prob_attention_is_differentiable() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv())
    ProbAttention(False, factor=2)(q, k, v).pow(2).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_cross_attention_with_different_lengths() -> None:
    q, k, v = _qkv(length_q=7, length_k=12)
    assert FullAttention(False, 0.1).train()(q, k, v).shape == (BATCH, HEADS, 7, HEAD_DIM)


@pytest.mark.parametrize("is_masked", [False, True], ids=["unmasked", "causal"])
def test_full_attention_training_path_equals_fused_kernel(is_masked: bool) -> None:
    # a dropout so small that nothing is dropped: the explicit training path must equal SDPA
    q, k, v = _qkv()
    expected = FullAttention(is_masked, dropout=0.0).eval()(q, k, v)
    actual = FullAttention(is_masked, dropout=1e-12).train()(q, k, v)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mix", [False, True], ids=["no-mix", "mix"])
def test_attention_layer_shapes_and_last_rows(mix: bool) -> None:
    torch.manual_seed(0)
    layer = AttentionLayer(FullAttention(True, 0.0), d_model=12, n_heads=3, mix=mix).eval()
    x = torch.randn(BATCH, 10, 12)
    full = layer(x, x, x)
    assert full.shape == (BATCH, 10, 12)
    torch.testing.assert_close(layer(x, x, x, n_out=4), full[:, -4:])


def _last_rows_and_gradients(layer: AttentionLayer, x: torch.Tensor,
                             n_out: int | None) -> list[torch.Tensor]:
    """The last 5 output rows and the gradients of their sum of squares (seeded sampling)."""
    layer.zero_grad(set_to_none=False)
    x = x.detach().requires_grad_()
    torch.manual_seed(3)
    rows = layer(x, x, x, n_out=n_out)[:, -5:]
    rows.pow(2).sum().backward()
    assert x.grad is not None
    return [rows.detach(), x.grad] + [p.grad.clone() for p in layer.parameters()
                                      if p.grad is not None]


@pytest.mark.parametrize("mix", [False, True], ids=["no-mix", "mix-skips-first-heads"])
@pytest.mark.parametrize("inner", ["prob", "full"])
def test_last_rows_only_path_equals_the_full_layer(mix: bool, inner: str) -> None:
    # n_out (with mix: only the heads those rows come from) gives the full layer's numbers
    torch.manual_seed(0)
    attention = ProbAttention(True, factor=1) if inner == "prob" else FullAttention(True, 0.0)
    layer = AttentionLayer(attention, d_model=16, n_heads=4, mix=mix).train()
    x = torch.randn(BATCH, 12, 16)
    expected = _last_rows_and_gradients(layer, x, n_out=None)
    actual = _last_rows_and_gradients(layer, x, n_out=5)
    # to float rounding of the largest value: the key bias's true gradient is 0 (softmax
    # ignores a shift shared by a row's scores), so its computed one is rounding noise
    scale = max(tensor.abs().max().item() for tensor in expected)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0.0, atol=1e-6 * scale)


def test_mix_reads_head_major_memory_as_time_major_rows() -> None:
    # with identity projections, mix=True output row r is the (B, H, L, d) buffer's r-th chunk
    d_model, heads, length = 4, 2, 3
    inner = FullAttention(False, 0.0)
    layers = {mix: AttentionLayer(inner, d_model, heads, mix=mix).eval() for mix in (False, True)}
    for layer in layers.values():
        for projection in (layer.query_projection, layer.key_projection,
                           layer.value_projection, layer.out_projection):
            torch.nn.init.eye_(projection.weight)
            torch.nn.init.zeros_(projection.bias)
    x = torch.randn(1, length, d_model)
    plain = layers[False](x, x, x)  # (1, L, H * d), time-major
    head_major = plain.view(1, length, heads, -1).transpose(1, 2).reshape(1, length, -1)
    torch.testing.assert_close(layers[True](x, x, x), head_major)
