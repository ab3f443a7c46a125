"""Informer attention: ProbSparse and full attention, and the projecting ``AttentionLayer``.

The inner attentions take and return head-major tensors ``(B, H, L, d_head)``; the
``AttentionLayer`` owns the projections and the output layout (including the reference's
"mix" of heads). The attention variant is injected into ``AttentionLayer``, as in the
reference implementation (zhouhaoyi/Informer2020) and Time-Series-Library.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        scores = torch.matmul(queries, keys.transpose(-2, -1))
        if self.is_masked:
            length_q, length_k = scores.shape[-2:]
            scores = scores.masked_fill(_future_mask(length_q, length_k, scores.device),
                                        float("-inf"))
        weights = torch.softmax(scores * (1.0 / math.sqrt(queries.shape[-1])), dim=-1)
        return torch.matmul(dropout(weights, self.dropout, True), values)


class ProbAttention(nn.Module):
    """ProbSparse self-attention (Zhou et al., AAAI 2021), numerically as the reference.

    Per forward pass (training and evaluation alike) each query gets ``U`` key indices drawn
    uniformly with replacement, shared across batch and heads. A query's sparsity is
    ``M = max(sampled scores) - sum(sampled scores) / L_K``; the top ``u`` queries get full
    softmax attention over all keys (causally masked when ``is_masked``), the others ("lazy")
    get ``mean(V)`` (unmasked) or ``cumsum(V)`` along time (masked). No dropout on weights.

    Unlike the reference, which gathers a ``(B, H, L_Q, U, E)`` copy of the keys, the
    sampled scores are picked from one ``Q @ K^T`` product computed without autograd (the
    selection is not differentiable anyway); only the kept rows are recomputed with
    gradients. Same values, far less memory and time.

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
        batch, heads, length_q, head_dim = queries.shape
        length_k = keys.shape[2]
        # head-major copies, reused by several products below
        queries, keys, values = queries.contiguous(), keys.contiguous(), values.contiguous()
        n_keys, n_queries = sample_sizes(self.factor, length_q, length_k)
        top = self._select_queries(queries, keys, n_keys, n_queries)  # (B, H, u)
        queries_top = queries.gather(2, top.unsqueeze(-1).expand(batch, heads, n_queries, head_dim))
        mask = None
        if self.is_masked:  # ProbMask: a kept query at position t sees keys 0..t
            mask = torch.arange(length_k, device=top.device) <= top.unsqueeze(-1)
        # softmax(q k^T / sqrt(E)) v for the kept queries only, no dropout
        attended = F.scaled_dot_product_attention(queries_top, keys, values, attn_mask=mask)
        context = self._lazy_context(values, length_q)
        index = top.unsqueeze(-1).expand(batch, heads, n_queries, values.shape[-1])
        return context.scatter_(2, index, attended.to(context.dtype))

    def _select_queries(self, queries: Tensor, keys: Tensor, n_keys: int, n_queries: int) -> Tensor:
        """Indices (B, H, u) of the queries with the largest sparsity measurement M."""
        batch, heads, length_q, _ = queries.shape
        length_k = keys.shape[2]
        sample = torch.randint(length_k, (length_q, n_keys), device=queries.device)
        with torch.no_grad():
            # One dense Q K^T beats gathering a (B, H, L_Q, U, E) copy of the keys.
            scores = torch.matmul(queries, keys.transpose(-2, -1))  # (B, H, L_Q, L_K)
            sampled = scores.gather(3, sample.expand(batch, heads, length_q, n_keys))
            sparsity = sampled.amax(-1) - sampled.sum(-1) / length_k  # (B, H, L_Q)
            return sparsity.topk(n_queries, dim=-1, sorted=False).indices

    def _lazy_context(self, values: Tensor, length_q: int) -> Tensor:
        """The lazy queries' output (B, H, L_Q, D): a fresh tensor, safe to write into."""
        if self.is_masked:
            if length_q != values.shape[2]:
                raise ValueError("masked ProbSparse attention needs L_Q == L_V (self-attention)")
            return values.cumsum(dim=2)
        batch, heads, _, head_dim = values.shape
        return values.mean(dim=2, keepdim=True).expand(batch, heads, length_q, head_dim).clone()


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
        nothing in the decoder's last layer).
        """
        batch, length, _ = queries.shape
        q, k, v = self._project(queries, keys, values)  # (B, L or S, H, d) each
        out = self.inner_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        n_out = length if n_out is None else n_out
        if self.mix:  # (B, H, L, d) memory read as (B, L, H * d)
            out = out.contiguous().view(batch, length, -1)[:, length - n_out:]
        else:
            out = out.transpose(1, 2)[:, length - n_out:].reshape(batch, n_out, -1)
        return self.out_projection(out)  # type: ignore[no-any-return]

    def _project(self, queries: Tensor, keys: Tensor,
                 values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V projections, each (B, L or S, H, d)."""
        heads = self.n_heads
        q = self.query_projection(queries)
        k = self.key_projection(keys)
        v = self.value_projection(values)
        return (q.view(*q.shape[:2], heads, -1), k.view(*k.shape[:2], heads, -1),
                v.view(*v.shape[:2], heads, -1))
