"""The feed-forward block: its fused CPU training path computes the reference's block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from informer_nas.informer.feed_forward import FeedForward, _FusedFeedForward

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("both_kernel_paths")  # native kernels and ATen alike


def _unfused(block: FeedForward, x: torch.Tensor) -> torch.Tensor:
    """The reference's composition, op by op: conv1 -> act -> dropout -> conv2 -> dropout."""
    hidden = block.conv1(x)
    hidden = F.gelu(hidden) if block.is_gelu else F.relu(hidden)
    return block.dropout(block.conv2(block.dropout(hidden)))  # type: ignore[no-any-return]


def _grads(block: FeedForward, x: torch.Tensor, out: torch.Tensor,
           grad: torch.Tensor) -> list[torch.Tensor]:
    tensors = [x, *block.parameters()]
    return list(torch.autograd.grad(out, tensors, grad))


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("p", [0.05, 0.5])
def test_fused_training_block_equals_the_unfused_one_with_the_same_draws(
        activation: str, p: float) -> None:
    torch.manual_seed(0)
    block = FeedForward(16, 64, p, activation).train()
    # a non-contiguous input, as the decoder's row slices give
    x = torch.randn(3, 20, 16).transpose(0, 1)[:, 1:].requires_grad_()
    grad = torch.randn(20, 2, 16)

    torch.manual_seed(7)
    fused = block(x)
    fused_grads = _grads(block, x, fused, grad)
    torch.manual_seed(7)
    plain = _unfused(block, x)
    plain_grads = _grads(block, x, plain, grad)

    assert fused.shape == plain.shape == (20, 2, 16)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(fused == 0, plain == 0), "the same positions dropped"
    for got, want in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_fused_backward_is_the_gradient_of_its_forward(activation: str) -> None:
    torch.manual_seed(1)
    block = FeedForward(4, 12, 0.3, activation).double()
    inputs = (torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True),
              *(p.detach().clone().requires_grad_() for p in block.parameters()))

    def seeded(*args: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(11)  # the same dropped positions at every evaluation
        out: torch.Tensor = _FusedFeedForward.apply(  # type: ignore[no-untyped-call]
            *args, 0.3, activation == "gelu")
        return out

    assert torch.autograd.gradcheck(seeded, inputs)


def test_fused_dropout_drops_at_rate_p_and_scales_the_rest() -> None:
    torch.manual_seed(2)
    block = FeedForward(32, 128, 0.2, "relu").train()
    with torch.no_grad():  # identity-like weights: the output shows the output dropout
        block.conv1.weight.zero_()
        block.conv1.bias.fill_(1.0)
        block.conv2.weight.fill_(1.0 / 128)
        block.conv2.bias.zero_()
    out = block(torch.randn(64, 50, 32))
    dropped = (out == 0).float().mean().item()
    assert 0.18 < dropped < 0.22
    # kept outputs: (1/(1-p)) * mean over kept hidden units of 1/(1-p) * 1, about 1/(1-p)
    kept = out[out != 0]
    assert abs(kept.mean().item() - 1.25) < 0.02


def test_evaluation_and_no_dropout_use_the_plain_block() -> None:
    torch.manual_seed(3)
    block = FeedForward(8, 32, 0.1, "gelu").eval()
    x = torch.randn(2, 6, 8)
    expected = block.conv2(F.gelu(block.conv1(x)))
    torch.testing.assert_close(block(x), expected)
    block.train()
    block.dropout.p = 0.0
    torch.testing.assert_close(block(x), expected)


def test_cpu_autocast_takes_the_plain_block() -> None:
    torch.manual_seed(4)
    block = FeedForward(8, 32, 0.1, "gelu").train()
    x = torch.randn(2, 6, 8, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.bfloat16  # autocast ran the products in bfloat16
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
