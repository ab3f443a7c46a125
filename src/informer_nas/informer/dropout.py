"""Dropout with a faster CPU mask, used by every Informer block.

``dropout`` / ``Dropout`` have ``F.dropout`` / ``nn.Dropout`` semantics (zero each element
with probability p, scale the rest by 1 / (1 - p)). On CPU the mask is drawn from 64-bit
random integers (``keep_mask``), which is several times faster than ATen's Bernoulli
sampler on x86 CPUs without MKL's VSL path; elsewhere ``F.dropout`` is used as is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(shape: torch.Size, p: float, device: torch.device,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Float mask: each element ``1 / (1 - p)`` with probability ``1 - p``, else 0.

    Each element compares 32 random bits with ``p * 2**32``: the same distribution as
    ``bernoulli_(1 - p)`` to 2**-32, drawn from torch's generator (so seeded runs repeat).
    On x86 CPUs other than Intel's, ATen's Bernoulli sampler does not use MKL and is several
    times slower than drawing 64-bit integers. A float mask (not bool) of ``dtype`` keeps
    both products (forward and backward) on the fast same-dtype path.
    """
    n_elements = math.prod(shape)
    bits = torch.empty((n_elements + 1) // 2, dtype=torch.int64, device=device)
    bits.random_(-(2**63), None)  # the full 64-bit range: two independent int32 per draw
    threshold = min(-(2**31) + round(p * 2**32), 2**31 - 1)
    keep = bits.view(torch.int32)[:n_elements] >= threshold
    return keep.to(dtype).mul_(1.0 / (1.0 - p)).view(shape)  # faster than a scalar where


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` semantics (zero with probability p, scale the rest by 1 / (1 - p)).

    On CPU the mask comes from ``keep_mask``; elsewhere ``F.dropout`` is used as is.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    # autograd's mul saves only the mask for the backward (the mask needs no gradient)
    return x * keep_mask(x.shape, p, x.device, x.dtype)


class Dropout(nn.Module):
    """``nn.Dropout`` with the faster CPU mask of ``keep_mask``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Any shape -> same shape."""
        return dropout(x, self.p, self.training)
