"""The fast CPU dropout: mask rate, scale, seeding, module behaviour and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from informer_nas.informer.dropout import Dropout, keep_mask

torch.set_num_threads(1)


def test_keep_mask_rate_scale_and_seeding() -> None:
    p = 0.3
    torch.manual_seed(3)
    mask = keep_mask(torch.Size([200, 500]), p, torch.device("cpu"))
    kept = (mask > 0).float().mean().item()
    assert abs(kept - (1 - p)) < 4 * math.sqrt(p * (1 - p) / mask.numel())
    assert sorted(set(mask.flatten().tolist())) == [0.0, pytest.approx(1 / (1 - p))]
    torch.manual_seed(3)
    assert torch.equal(mask, keep_mask(torch.Size([200, 500]), p, torch.device("cpu")))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_keep_mask_has_the_requested_dtype_and_any_element_count(dtype: torch.dtype) -> None:
    # 3 * 5 * 7 elements: not a multiple of the four 16-bit draws per 64-bit word
    mask = keep_mask(torch.Size([3, 5, 7]), 0.5, torch.device("cpu"), dtype)
    assert mask.dtype == dtype and mask.shape == (3, 5, 7)
    assert set(mask.flatten().tolist()) <= {0.0, 2.0}


def test_keep_mask_rounds_p_to_a_multiple_of_2_to_the_minus_16() -> None:
    # p below 2**-17 rounds to 0 (nothing dropped); the deviation from p is at most 2**-17
    assert bool((keep_mask(torch.Size([1000, 100]), 2.0**-18, torch.device("cpu")) > 0).all())


def test_dropout_module_train_eval_and_gradient() -> None:
    layer = Dropout(0.5)
    x = torch.randn(64, 32, requires_grad=True)
    assert layer.eval()(x) is x
    out = layer.train()(x)
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, (out != 0).float() * 2.0)
    torch.testing.assert_close(out[out != 0], x[out != 0] * 2.0)
