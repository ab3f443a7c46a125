"""Dropout with a faster CPU mask, used by every Informer block.

``dropout`` / ``Dropout`` have ``F.dropout`` / ``nn.Dropout`` semantics (zero each element
with probability p, scale the rest by 1 / (1 - p)). On CPU the mask is drawn from random
integers (``keep_mask``), several times faster than ATen's Bernoulli sampler on x86 CPUs
without MKL's VSL path; elsewhere ``F.dropout`` is used as is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(shape: torch.Size, p: float, device: torch.device,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Float mask: each element ``1 / (1 - p)`` with probability ``1 - p'``, else 0.

    Each element compares 16 random bits with ``p * 2**16`` rounded, so an element is dropped
    with probability ``p' = round(p * 2**16) / 2**16``: ``|p' - p| <= 2**-17`` (for the
    default p = 0.05, p' = 3277 / 65536 = 0.05000305, 3.05e-6 above p); the kept elements are
    scaled by ``1 / (1 - p)`` as ``F.dropout`` does. The bits come from torch's generator (so
    seeded runs repeat), four elements per 64-bit draw: drawing is the mask's main cost, and
    32 bits per element would double it. The comparison writes the float mask directly, and
    a float mask (not bool) of ``dtype`` keeps both products (forward and backward) on the
    fast same-dtype path.
    """
    n_elements = math.prod(shape)
    bits = torch.empty((n_elements + 3) // 4, dtype=torch.int64, device=device)
    bits.random_(-(2**63), None)  # the full 64-bit range: four independent int16 per draw
    threshold = min(-(2**15) + round(p * 2**16), 2**15 - 1)
    mask = torch.empty(shape, dtype=dtype, device=device)
    torch.ge(bits.view(torch.int16)[:n_elements].view(shape), threshold, out=mask)
    return mask.mul_(1.0 / (1.0 - p))


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
