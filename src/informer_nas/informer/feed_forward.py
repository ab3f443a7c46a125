"""The position-wise feed-forward block, with a fused CPU training path.

The block is the reference's: Conv1d(k=1) -> activation -> dropout -> Conv1d(k=1) -> dropout
(the same dropout module twice). A kernel-1 convolution is a linear map over channels, so both
are ``nn.Linear`` on ``(B, L, d)``: same parameters and initialisation, no transposes.

In CPU training with dropout the whole block runs as one autograd function. The arithmetic is
the same; what changes is how often memory is crossed. Per element of the ``d_ff``-wide hidden
activation (the block's largest tensor, 4x the model width) the unfused graph makes a scaled
copy for the dropout in the forward and another in the backward; here the 1 / (1 - p) of both
dropouts rides in the products' ``alpha`` / ``beta`` (free in the GEMM) and the dropped
positions are zeroed in place in tensors the function owns. On a 2-core CPU, where a training
step's tensors no longer sit in cache, each pass saved costs about as much as its arithmetic.

Where the native kernels are available (``native``; gelu only), the bias, the activation, its
derivative and the hidden dropout are one pass in C over ``W1 x``, and the backward multiplies by
the saved derivative instead of evaluating gelu's again.

The dropped positions are drawn by ``dropout.drop_positions`` in the unfused order (hidden
first, then output), so a seeded run draws the same positions either way; outputs and
gradients agree with the unfused block to float rounding (the scale is applied to products
rather than to their operands).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from informer_nas.informer import native
from informer_nas.informer.dropout import Dropout, drop_positions, scale_and_zero


class FeedForward(nn.Module):
    """Conv1d(k=1) -> activation -> dropout -> Conv1d(k=1) -> dropout, as two ``nn.Linear``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Linear(d_model, d_ff)
        self.conv2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)
        self.is_gelu = activation == "gelu"

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model), dropout applied to the output as well."""
        p = self.dropout.p
        if (self.training and 0.0 < p < 1.0 and x.device.type == "cpu"
                and not torch.is_autocast_enabled("cpu")):  # autocast: op by op
            out: Tensor = _FusedFeedForward.apply(  # type: ignore[no-untyped-call]
                x, self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias,
                p, self.is_gelu)
            return out
        hidden = F.gelu(self.conv1(x)) if self.is_gelu else F.relu(self.conv1(x))
        return self.dropout(self.conv2(self.dropout(hidden)))  # type: ignore[no-any-return]


class _FusedFeedForward(torch.autograd.Function):
    """The training block on CPU: ``drop(W2 drop(act(W1 x + b1)) + b2)``, one graph node.

    With ``s = 1 / (1 - p)`` and ``m1``, ``m2`` the kept positions, the output is
    ``s m2 (b2 + s (m1 a) W2^T)`` where ``a = act(h)``, ``h = W1 x + b1``: one ``addmm`` with
    ``beta = s``, ``alpha = s^2`` after zeroing ``a`` at the dropped positions in place.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                p: float, is_gelu: bool) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])
        scale = 1.0 / (1.0 - p)
        kernels = native.kernels() if is_gelu else None
        if kernels is not None and kernels.accepts(rows):
            # bias, gelu, its derivative and the hidden dropout in one pass (native/kernels.c)
            active = torch.mm(rows, w1.t())
            hidden_drops = drop_positions(active.numel(), p, x.device)
            slope = kernels.gelu_forward(active, b1, hidden_drops)  # zero where dropped
            ctx.mode = "native"
        else:
            hidden = torch.addmm(b1, rows, w1.t())
            active = F.gelu(hidden) if is_gelu else torch.relu(hidden)
            hidden_drops = drop_positions(active.numel(), p, x.device)
            active.view(-1).index_fill_(0, hidden_drops, 0.0)
            # the backward reads relu's derivative from its (dropped) output, gelu's from h
            slope = hidden if is_gelu else active
            ctx.mode = "gelu" if is_gelu else "relu"
        out = torch.addmm(b2, active, w2.t(), beta=scale, alpha=scale * scale)
        out_drops = drop_positions(out.numel(), p, x.device)
        out.view(-1).index_fill_(0, out_drops, 0.0)
        ctx.save_for_backward(rows, slope, active, w1, w2, hidden_drops, out_drops)
        ctx.scale, ctx.x_shape = scale, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, slope, active, w1, w2, hidden_drops, out_drops = ctx.saved_tensors
        scale = ctx.scale
        # s^2 m2 grad: one pass; then W2's gradient and the hidden's need no scaling
        grad_out = scale_and_zero(grad.reshape(-1, grad.shape[-1]), scale * scale, out_drops)
        grad_w2 = torch.mm(grad_out.t(), active)
        grad_b2 = grad_out.sum(0).div_(scale)
        grad_hidden = torch.mm(grad_out, w2)
        if ctx.mode == "native":  # the saved slope is gelu', zero where dropped
            grad_hidden.mul_(slope)
        else:
            grad_hidden.view(-1).index_fill_(0, hidden_drops, 0.0)
            # out of place: written over ``grad_hidden`` (``grad_input=``), the step made a copy
            if ctx.mode == "gelu":
                grad_hidden = torch.ops.aten.gelu_backward(grad_hidden, slope)
            else:
                grad_hidden = torch.ops.aten.threshold_backward(grad_hidden, slope, 0.0)
        grad_w1 = torch.mm(grad_hidden.t(), rows)
        grad_b1 = grad_hidden.sum(0)
        grad_x = torch.mm(grad_hidden, w1).view(ctx.x_shape) if ctx.needs_input_grad[0] else None
        return grad_x, grad_w1, grad_b1, grad_w2, grad_b2, None, None
