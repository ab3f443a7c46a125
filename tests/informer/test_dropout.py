"""The CPU dropout from drawn positions: rate, independence, seeding, module and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from informer_nas.informer import dropout as dropout_module
from informer_nas.informer.dropout import Dropout, drop_positions

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("both_kernel_paths")  # native kernels and ATen alike
CPU = torch.device("cpu")


def _within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p", [1e-4, 0.05, 0.5, 0.9])
def test_drop_positions_are_sorted_distinct_in_range_at_rate_p(p: float) -> None:
    n = 400_000
    torch.manual_seed(0)
    positions = drop_positions(n, p, CPU)
    assert positions.dtype == torch.int64
    assert bool((positions[1:] > positions[:-1]).all()), "sorted and distinct"
    assert int(positions[0]) >= 0 and int(positions[-1]) < n
    assert _within_binomial(len(positions), n, p)


def test_drops_are_independent_and_cover_the_whole_range() -> None:
    n, p = 400_000, 0.3
    torch.manual_seed(1)
    dropped = torch.zeros(n, dtype=torch.bool)
    dropped[drop_positions(n, p, CPU)] = True
    # neighbours dropped together at rate p^2 (evenly spaced or clustered drops would not be)
    both = int((dropped[1:] & dropped[:-1]).sum())
    assert _within_binomial(both, n - 1, p * p, sigmas=6)
    # each tenth of the range at rate p (a short draw would leave the end undropped)
    for part in dropped.view(10, -1):
        assert _within_binomial(int(part.sum()), len(part), p)


def test_drop_positions_draws_more_when_the_first_draw_falls_short(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # with too few draws on purpose, the continuation must still cover the whole range
    monkeypatch.setattr(dropout_module, "SAFETY_SIGMAS", -3.0)
    n, p = 100_000, 0.05
    torch.manual_seed(2)
    positions = drop_positions(n, p, CPU)
    assert bool((positions[1:] > positions[:-1]).all()) and int(positions[-1]) < n
    assert _within_binomial(len(positions), n, p)
    assert _within_binomial(int((positions >= n * 9 // 10).sum()), n // 10, p)


def test_same_seed_same_positions() -> None:
    torch.manual_seed(3)
    first = drop_positions(50_000, 0.05, CPU)
    torch.manual_seed(3)
    assert torch.equal(first, drop_positions(50_000, 0.05, CPU))
    assert not torch.equal(first, drop_positions(50_000, 0.05, CPU))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dropout_scales_kept_elements_and_keeps_dtype(dtype: torch.dtype) -> None:
    p = 0.25
    x = torch.rand(40, 30, 7, dtype=dtype) + 1.0  # never zero
    out = Dropout(p).train()(x)
    assert out.dtype == dtype and out.shape == x.shape
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * (1 / (1 - p)))
    assert _within_binomial(int((~kept).sum()), x.numel(), p)


def test_dropout_module_train_eval_and_gradient() -> None:
    layer = Dropout(0.5)
    x = torch.randn(64, 32, requires_grad=True)
    assert layer.eval()(x) is x
    out = layer.train()(x)
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, (out != 0).float() * 2.0)
    torch.testing.assert_close(out[out != 0], x[out != 0] * 2.0)


def test_dropout_of_a_non_contiguous_input_and_its_gradient() -> None:
    base = torch.rand(30, 20) + 1.0
    x = base.t().requires_grad_()  # (20, 30), transposed strides
    out = Dropout(0.4).train()(x)
    weights = torch.randn(20, 30)
    (out * weights).sum().backward()
    kept = out != 0
    torch.testing.assert_close(out[kept], x.detach()[kept] / 0.6)
    assert x.grad is not None
    torch.testing.assert_close(x.grad, kept.float() * weights / 0.6)
    assert x.detach().eq(base.t()).all(), "the input is never modified"
