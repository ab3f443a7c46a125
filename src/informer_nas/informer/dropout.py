"""Dropout that draws the dropped positions, not a mask, used by every Informer block.

``dropout`` / ``Dropout`` have ``F.dropout`` / ``nn.Dropout`` semantics: each element is
zeroed independently with probability p and the others are scaled by 1 / (1 - p). On CPU,
instead of one random draw per element, ``drop_positions`` draws the gaps between dropped
elements, which are geometrically distributed: about ``p * n`` draws for ``n`` elements (20
times fewer at the default p = 0.05), and only those positions are kept for the backward
(8 bytes per dropped element instead of a float mask per element). Elsewhere ``F.dropout`` is
used as is. With the native kernels (``native``), turning the draws into positions and scaling
with zeroing are one C pass each; the draws are torch's either way.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from informer_nas.informer import native

SAFETY_SIGMAS = 6.0  # extra draws, in standard deviations of the number of drops


def drop_positions(n_elements: int, p: float, device: torch.device) -> Tensor:
    """Sorted flat indices of the elements to drop, each dropped with probability ``p``.

    The number of kept elements before each drop is geometric: ``floor(ln(V) / ln(1 - p))``
    for ``V`` uniform on (0, 1] (inversion), so the positions are the cumulative sums of
    those gaps, plus one per drop. Enough gaps for ``n_elements`` are drawn at once (the
    mean number of drops plus six standard deviations); in the rare case they fall short,
    more are drawn from where they ended, which leaves the distribution unchanged (the
    geometric distribution is memoryless). Draws come from torch's generator, so seeded runs
    repeat. The uniforms are float32 (steps of 2**-24): each gap's probabilities are off by
    at most 2**-24, against 2**-16 for a mask from 16 random bits.

    Args:
        n_elements: number of elements (positions are in ``[0, n_elements)``).
        p: drop probability, ``0 < p < 1``.
        device: where the indices live.
    """
    log_keep = math.log1p(-p)
    kernels = native.kernels() if device.type == "cpu" else None
    positions: list[Tensor] = []
    start = 0  # the first position not yet covered by the gaps drawn so far
    while start < n_elements:
        mean = (n_elements - start) * p
        n_draws = int(mean + SAFETY_SIGMAS * math.sqrt(mean * (1.0 - p))) + 16
        uniform = torch.rand(n_draws, device=device)  # [0, 1): 1 - u is in (0, 1]
        if kernels is not None:  # the steps below in one pass (native/kernels.c)
            drops = kernels.drop_positions(uniform, log_keep, start, n_elements)
            count = drops.numel()
        else:
            gaps = torch.log1p(uniform.neg_()).div_(log_keep).to(torch.int64)
            drops = gaps.add_(1).cumsum_(0).add_(start - 1)
            count = int(torch.searchsorted(drops, n_elements))
        positions.append(drops[:count])
        start = int(drops[-1]) + 1 if count == n_draws else n_elements
    return positions[0] if len(positions) == 1 else torch.cat(positions)


class _PositionDropout(torch.autograd.Function):
    """Scale by 1 / (1 - p), zero the drawn positions; the backward does the same to the
    gradient. The output is a new contiguous tensor (the input is never modified).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:
        positions = drop_positions(x.numel(), p, x.device)
        ctx.save_for_backward(positions)
        ctx.p = p
        return scale_and_zero(x, 1.0 / (1.0 - p), positions)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (positions,) = ctx.saved_tensors
        return scale_and_zero(grad, 1.0 / (1.0 - ctx.p), positions), None


def scale_and_zero(x: Tensor, scale: float, positions: Tensor) -> Tensor:
    """A contiguous ``x * scale`` with the given flat positions set to zero."""
    kernels = native.kernels()
    if kernels is not None and kernels.accepts(x):
        return kernels.scale_and_zero(x, scale, positions)  # one pass
    out = torch.mul(x, scale).contiguous()  # a copy already unless x has odd strides
    out.view(-1).index_fill_(0, positions, 0.0)
    return out


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` semantics (zero with probability p, scale the rest by 1 / (1 - p)).

    On CPU the dropped positions come from ``drop_positions``; elsewhere ``F.dropout`` is
    used as is.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    out: Tensor = _PositionDropout.apply(x, p)  # type: ignore[no-untyped-call]
    return out


class Dropout(nn.Module):
    """``nn.Dropout`` with the CPU dropout of ``drop_positions``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Any shape -> same shape."""
        return dropout(x, self.p, self.training)
