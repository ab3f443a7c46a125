"""Informer attention: ProbSparse and full attention, and the projecting ``AttentionLayer``.

The inner attentions take and return head-major tensors ``(B, H, L, d_head)``; the
``AttentionLayer`` owns the projections and the output layout (including the reference's
"mix" of heads). The attention variant is injected into ``AttentionLayer``, as in the
reference implementation (zhouhaoyi/Informer2020) and Time-Series-Library.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from informer_nas.informer import native
from informer_nas.informer.dropout import dropout


def sample_sizes(factor: int, length_q: int, length_k: int) -> tuple[int, int]:
    """ProbSparse sample sizes ``(U, u)``: keys sampled per query and queries kept.

    ``U = factor * ceil(ln L_K)`` capped at ``L_K``; ``u = factor * ceil(ln L_Q)`` capped at
    ``L_Q``. Both are at least 1 (the reference would fail on a length-1 sequence).
    """
    n_keys = min(max(1, factor * math.ceil(math.log(length_k))), length_k)
    n_queries = min(max(1, factor * math.ceil(math.log(length_q))), length_q)
    return n_keys, n_queries


@functools.lru_cache(maxsize=16)
def _future_mask(length_q: int, length_k: int, device: torch.device) -> Tensor:
    """(L_Q, L_K) bool, True where key j > query i (hidden by the causal mask); cached."""
    return torch.ones(length_q, length_k, dtype=torch.bool, device=device).triu(1)


class FullAttention(nn.Module):
    """Canonical scaled dot-product attention, dropout on the attention weights.

    Args:
        is_masked: causal mask (query i sees keys j <= i), for decoder self-attention.
        dropout: dropout probability on the softmax weights (training only).
    """

    def __init__(self, is_masked: bool, dropout: float) -> None:
        super().__init__()
        self.is_masked = is_masked
        self.dropout = dropout

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """(B, H, L_Q, E), (B, H, L_K, E), (B, H, L_K, D) -> (B, H, L_Q, D)."""
        if self.training and self.dropout > 0.0 and queries.device.type == "cpu":
            return self._explicit(queries, keys, values)
        return F.scaled_dot_product_attention(
            queries, keys, values, dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.is_masked,
        )

    def _explicit(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        # The fused kernel's dropout uses ATen's slow CPU Bernoulli sampler.
        hidden = None
        if self.is_masked:
            hidden = _future_mask(queries.shape[-2], keys.shape[-2], queries.device)
        weights = _attention_weights(queries, keys, hidden)
        return torch.matmul(dropout(weights, self.dropout, True), values)


class ProbAttention(nn.Module):
    """ProbSparse self-attention (Zhou et al., AAAI 2021), numerically as the reference.

    Per forward pass (training and evaluation alike) each query gets ``U`` key indices drawn
    uniformly with replacement, shared across batch and heads. A query's sparsity is
    ``M = max(sampled scores) - sum(sampled scores) / L_K``; the top ``u`` queries get full
    softmax attention over all keys (causally masked when ``is_masked``), the others ("lazy")
    get ``mean(V)`` (unmasked) or ``cumsum(V)`` along time (masked). No dropout on weights.

    Unlike the reference, which gathers a ``(B, H, L_Q, U, E)`` copy of the keys, the
    sampled scores are picked from ``Q @ K^T`` products computed without autograd, a few
    (batch, head) pairs at a time (the selection is not differentiable anyway); only the kept
    rows are recomputed with gradients. Kept queries are taken and put back as rows of
    ``(B * H * L, d)`` views (``index_select`` / ``index_copy_``), several times faster than
    ``gather`` / ``scatter`` with a per-element index. Same values, far less memory and time.

    With the native CPU kernels (``native``) the selection and the attention after it,
    forward and backward, run in C instead (``_NativeProbAttention``): the same values to
    float rounding, the same random draws.

    Args:
        is_masked: decoder self-attention (causal mask, cumulative-sum lazy queries).
        factor: the sampling factor ``c``.
    """

    def __init__(self, is_masked: bool, factor: int) -> None:
        super().__init__()
        self.is_masked = is_masked
        self.factor = factor

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """(B, H, L_Q, E), (B, H, L_K, E), (B, H, L_K, D) -> (B, H, L_Q, D)."""
        batch, heads, length_q, _ = queries.shape
        length_k = keys.shape[2]
        if self.is_masked and length_q != length_k:
            raise ValueError("masked ProbSparse attention needs L_Q == L_V (self-attention)")
        n_keys, n_queries = sample_sizes(self.factor, length_q, length_k)
        sample = torch.randint(length_k, (length_q, n_keys), device=queries.device)
        kernels = native.kernels()
        if kernels is not None and kernels.accepts_heads(queries, keys, values):
            with torch.no_grad():
                sparsity = kernels.sparsity(queries, keys, sample)
                top = sparsity.topk(n_queries, dim=-1, sorted=False).indices
            out: Tensor = _NativeProbAttention.apply(  # type: ignore[no-untyped-call]
                queries, keys, values, top, self.is_masked, kernels)
            return out
        # head-major copies, reused by several products below
        queries, keys, values = queries.contiguous(), keys.contiguous(), values.contiguous()
        with torch.no_grad():
            top = _select_queries(queries, keys, sample, n_queries)  # (B, H, u)
            offsets = torch.arange(batch * heads, device=top.device).view(batch, heads, 1)
            rows = (top + offsets * length_q).view(-1)  # kept queries in (B * H * L_Q, ...) views
        hidden = None
        if self.is_masked:  # ProbMask: a kept query at position t sees keys 0..t
            hidden = torch.arange(length_k, device=top.device) > top.unsqueeze(-1)
        # softmax(q k^T / sqrt(E)) v for the kept queries only, no dropout
        attended = _attend(_rows(queries, rows, n_queries), keys, values, hidden)
        context = self._lazy_context(values, length_q)
        context.view(-1, context.shape[-1]).index_copy_(
            0, rows, attended.reshape(-1, context.shape[-1]).to(context.dtype))
        return context

    def _lazy_context(self, values: Tensor, length_q: int) -> Tensor:
        """The lazy queries' output (B, H, L_Q, D): a fresh contiguous tensor to write into."""
        if self.is_masked:
            return values.cumsum(dim=2)
        batch, heads, _, head_dim = values.shape
        return values.mean(dim=2, keepdim=True).expand(batch, heads, length_q, head_dim).clone()


SCORE_CHUNK_FLOATS = 1 << 17  # 512 KB of scores per chunk: stays in a core's L2 cache


def _select_queries(queries: Tensor, keys: Tensor, sample: Tensor, n_queries: int) -> Tensor:
    """Indices (B, H, u) of the queries with the largest sparsity measurement M.

    The scores ``Q K^T`` are computed a few (batch, head) pairs at a time, so that each chunk
    is still in cache when its sampled scores are picked out and reduced: on a CPU a whole
    ``(B, H, L_Q, L_K)`` product has left the cache by then, and picking 25 scores per row
    from it costs more than the product. The values are the same as from one product.

    Args:
        queries: (B, H, L_Q, E) contiguous.
        keys: (B, H, L_K, E) contiguous.
        sample: (L_Q, U) the key indices sampled for each query.
        n_queries: u.
    """
    batch, heads, length_q, head_dim = queries.shape
    length_k, n_keys = keys.shape[2], sample.shape[1]
    pairs = batch * heads
    # The sampled scores are laid out (U, L_Q) per pair: reducing over U then runs along
    # whole rows, about ten times faster than over a last dimension of 25.
    positions = torch.arange(length_q, device=sample.device).unsqueeze(1) * length_k + sample
    positions = positions.t().reshape(1, -1)
    flat_queries = queries.view(pairs, length_q, head_dim)
    flat_keys = keys.view(pairs, length_k, head_dim)
    sparsity = torch.empty(pairs, length_q, device=queries.device, dtype=queries.dtype)
    step = max(1, SCORE_CHUNK_FLOATS // (length_q * length_k))
    for first in range(0, pairs, step):
        last = min(first + step, pairs)
        scores = torch.bmm(flat_queries[first:last], flat_keys[first:last].transpose(1, 2))
        sampled = torch.gather(scores.view(last - first, -1), 1,
                               positions.expand(last - first, -1))
        sampled = sampled.view(last - first, n_keys, length_q)
        torch.sub(sampled.amax(1), sampled.sum(1).div_(length_k), out=sparsity[first:last])
    return sparsity.view(batch, heads, length_q).topk(n_queries, dim=-1, sorted=False).indices


class _NativeProbAttention(torch.autograd.Function):
    """ProbSparse attention for given kept queries, forward and backward in C (``native``).

    The same function as the ATen path of ``ProbAttention.forward`` after the selection
    (lazy rows, then the kept rows' softmax attention written over them). Q, K and V are
    read in whatever (B, H, L) strides they come in (the projections' time-major memory:
    no head-major copies), and their gradients are laid out the same way.
    """

    @staticmethod
    def forward(ctx: Any, queries: Tensor, keys: Tensor, values: Tensor, top: Tensor,
                is_masked: bool, kernels: native.Kernels) -> Tensor:
        scale = 1.0 / math.sqrt(queries.shape[-1])
        out, probs = kernels.attention_forward(queries, keys, values, top, scale, is_masked)
        ctx.save_for_backward(queries, keys, values, top, probs)
        ctx.scale, ctx.is_masked, ctx.kernels = scale, is_masked, kernels
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        queries, keys, values, top, probs = ctx.saved_tensors
        grads = ctx.kernels.attention_backward(queries, keys, values, top, probs, grad,
                                               ctx.scale, ctx.is_masked)
        return (*grads, None, None, None)


def _attention_weights(queries: Tensor, keys: Tensor, hidden: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(E)) over the keys, ``hidden`` (broadcast to the scores) True
    where a query may not see a key; every query must see at least one.
    """
    scores = torch.matmul(queries, keys.transpose(-2, -1))
    scores = scores.mul_(1.0 / math.sqrt(queries.shape[-1]))  # in place: mm saves no output
    if hidden is not None:
        scores = scores.masked_fill_(hidden, float("-inf"))
    return torch.softmax(scores, dim=-1)


def _attend(queries: Tensor, keys: Tensor, values: Tensor, hidden: Tensor | None) -> Tensor:
    """Attention without dropout: ``_attention_weights`` times the values.

    On CPU as the reference writes it (product, scale, mask, softmax, product): for the few
    kept queries of ProbSparse attention the fused CPU kernel is slower, forward and backward
    (2-3 % of a small-config training step). Elsewhere the fused kernel.
    """
    if queries.device.type != "cpu":
        seen = None if hidden is None else ~hidden
        return F.scaled_dot_product_attention(queries, keys, values, attn_mask=seen)
    return torch.matmul(_attention_weights(queries, keys, hidden), values)


def _rows(x: Tensor, rows: Tensor, n_rows: int) -> Tensor:
    """(B, H, L, C) contiguous -> (B, H, n_rows, C): the given rows of its (B * H * L, C) view."""
    return x.view(-1, x.shape[-1]).index_select(0, rows).view(*x.shape[:2], n_rows, -1)


class AttentionLayer(nn.Module):
    """Multi-head attention around an injected inner attention.

    Args:
        attention: ``ProbAttention`` or ``FullAttention``.
        d_model: model width.
        n_heads: number of heads (``d_model`` must be divisible by it).
        mix: the reference's head mixing: the ``(B, L, H, d)`` output is laid out in
            ``(B, H, L, d)`` memory order before the ``(B, L, H*d)`` view, so the output
            projection sees rows that mix time steps and heads. The reference uses it in the
            decoder self-attention only.
    """

    def __init__(self, attention: nn.Module, d_model: int, n_heads: int, mix: bool) -> None:
        super().__init__()
        head_dim = d_model // n_heads
        self.inner_attention = attention
        self.query_projection = nn.Linear(d_model, head_dim * n_heads)
        self.key_projection = nn.Linear(d_model, head_dim * n_heads)
        self.value_projection = nn.Linear(d_model, head_dim * n_heads)
        self.out_projection = nn.Linear(head_dim * n_heads, d_model)
        self.n_heads = n_heads
        self.mix = mix

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                n_out: int | None = None) -> Tensor:
        """(B, L, d_model), (B, S, d_model), (B, S, d_model) -> (B, n_out or L, d_model).

        ``n_out`` keeps only the last ``n_out`` output rows (the others are computed for
        nothing in the decoder's last layer). With ``mix`` those rows come from the last heads
        only, so the heads before them are not computed at all: heads are independent, and
        the inner attention draws the same random numbers for any number of heads.
        """
        batch, length, d_model = queries.shape
        n_out = length if n_out is None else n_out
        first_head = (length - n_out) * self.n_heads // length if self.mix else 0
        # (B, L or S, H', d) each, H' = n_heads - first_head
        q, k, v = self._project(queries, keys, values, first_head)
        out = self.inner_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        if self.mix:  # (B, H, L, d) memory read as (B, L, H * d), less the first heads' part
            start = (length - n_out) * d_model - first_head * length * out.shape[-1]
            out = out.contiguous().view(batch, -1)[:, start:start + n_out * d_model]
            out = out.view(batch, n_out, d_model)
        else:
            out = out.transpose(1, 2)[:, length - n_out:].reshape(batch, n_out, -1)
        return self.out_projection(out)  # type: ignore[no-any-return]

    def _project(self, queries: Tensor, keys: Tensor, values: Tensor,
                 first_head: int) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V of the heads from ``first_head`` on, each (B, L or S, H - first_head, d)."""
        head_dim = self.query_projection.out_features // self.n_heads
        return (_project_heads(queries, self.query_projection, first_head, head_dim),
                _project_heads(keys, self.key_projection, first_head, head_dim),
                _project_heads(values, self.value_projection, first_head, head_dim))


def _project_heads(x: Tensor, projection: nn.Linear, first_head: int, head_dim: int) -> Tensor:
    """(B, L, d_model) -> (B, L, n_heads - first_head, d): the projection's output for the
    heads from ``first_head`` on (a row slice of its weight; the other rows get no gradient).
    """
    weight: Tensor = projection.weight
    bias: Tensor = projection.bias
    if first_head > 0:  # not otherwise: a slice's gradient is copied into a zero-filled weight
        weight, bias = weight[first_head * head_dim:], bias[first_head * head_dim:]
    out = F.linear(x, weight, bias)
    return out.view(*out.shape[:2], -1, head_dim)
