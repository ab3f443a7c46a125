"""Native CPU kernels: each computes what the ATen operations it replaces compute, they are
built once per machine and cached, and without them (no compiler, turned off) training takes
the ATen path with the same results.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from informer_nas.informer import native
from informer_nas.informer.attention import ProbAttention
from informer_nas.informer.dropout import drop_positions
from informer_nas.informer.feed_forward import FeedForward

CPU = torch.device("cpu")
# what a fresh interpreter prints after loading the kernels: where from, or why not
LOAD_AND_REPORT = ("from informer_nas.informer import native; native.kernels(); "
                   "print(native.status().detail)")


@pytest.fixture
def kernels() -> native.Kernels:
    loaded = native.kernels()
    if loaded is None:
        pytest.skip(f"no native kernels on this machine: {native.status().detail}")
    return loaded


@pytest.fixture
def fresh_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``native.kernels()`` decides anew under the test's environment, and again after it."""
    native.kernels.cache_clear()
    yield
    native.kernels.cache_clear()


@pytest.fixture
def without_native(monkeypatch: pytest.MonkeyPatch, fresh_kernels: None) -> None:
    monkeypatch.setenv(native.DISABLE_VARIABLE, "0")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("rows", "cols"), [(96, 256), (33, 7), (1, 1)])
def test_gelu_kernel_writes_gelu_and_its_derivative_zero_where_dropped(
        kernels: native.Kernels, rows: int, cols: int, threads: int) -> None:
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        hidden = torch.randn(rows, cols) * 3  # into both tails of erf
        bias = torch.randn(cols)
        drops = drop_positions(rows * cols, 0.3, CPU)
        active = hidden.clone()
        slope = kernels.gelu_forward(active, bias, drops)
    finally:
        torch.set_num_threads(before)
    pre = hidden + bias
    want_active = F.gelu(pre)
    want_slope = torch.ops.aten.gelu_backward(torch.ones_like(pre), pre)
    want_active.view(-1)[drops] = 0.0
    want_slope.view(-1)[drops] = 0.0
    torch.testing.assert_close(active, want_active, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(slope, want_slope, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize(("batch", "heads", "length_q", "length_k", "head_dim", "n_keys"), [
    (4, 4, 96, 96, 16, 25),  # the small config's encoder
    (2, 3, 7, 37, 5, 9),  # neither length a whole block, odd width
    (1, 1, 1, 1, 1, 1),
])
def test_sparsity_kernel_equals_sampled_scores_of_the_full_product(
        kernels: native.Kernels, batch: int, heads: int, length_q: int, length_k: int,
        head_dim: int, n_keys: int) -> None:
    torch.manual_seed(1)
    queries = torch.randn(batch, heads, length_q, head_dim)
    keys = torch.randn(batch, heads, length_k, head_dim)
    sample = torch.randint(length_k, (length_q, n_keys))
    scores = queries @ keys.transpose(-1, -2)
    picked = scores[:, :, torch.arange(length_q).unsqueeze(1), sample]  # (B, H, L_Q, U)
    want = picked.amax(-1) - picked.sum(-1) / length_k
    torch.testing.assert_close(kernels.sparsity(queries, keys, sample), want,
                               rtol=1e-5, atol=1e-5)


def _attention_by_autograd(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                           top: torch.Tensor, is_masked: bool) -> tuple[torch.Tensor, ...]:
    """ProbSparse attention for the kept queries ``top``, op by op: output, softmax weights."""
    batch, heads, length_q, head_dim = queries.shape
    length_k, value_dim, n_top = keys.shape[2], values.shape[3], top.shape[2]
    if is_masked:
        context = values.cumsum(2)
    else:
        context = values.mean(2, keepdim=True).expand(batch, heads, length_q, value_dim)
    kept = torch.gather(queries, 2, top.unsqueeze(-1).expand(batch, heads, n_top, head_dim))
    scores = kept @ keys.transpose(-1, -2) / math.sqrt(head_dim)
    if is_masked:
        scores = scores.masked_fill(torch.arange(length_k) > top.unsqueeze(-1), float("-inf"))
    weights = scores.softmax(-1)
    rows = top.unsqueeze(-1).expand(batch, heads, n_top, value_dim)
    return context.scatter(2, rows, weights @ values), weights


@pytest.mark.parametrize("is_masked", [False, True])
@pytest.mark.parametrize(("batch", "heads", "length", "head_dim", "value_dim", "n_top"), [
    (4, 4, 96, 16, 16, 25),  # the small config's encoder: constant widths
    (2, 2, 40, 64, 64, 20),  # the paper config's head size
    (2, 3, 7, 5, 6, 7),  # odd widths (the general loops), every query kept
    (1, 1, 1, 1, 1, 1),
])
def test_attention_kernels_equal_autograd_through_the_same_operations(
        kernels: native.Kernels, is_masked: bool, batch: int, heads: int, length: int,
        head_dim: int, value_dim: int, n_top: int) -> None:
    torch.manual_seed(10)
    # time-major memory seen head-major, as the projections give them
    queries = torch.randn(batch, length, heads, head_dim).transpose(1, 2).requires_grad_()
    keys = torch.randn(batch, length, heads, head_dim).transpose(1, 2).requires_grad_()
    values = torch.randn(batch, length, heads, value_dim).transpose(1, 2).requires_grad_()
    top = torch.stack([torch.randperm(length)[:n_top] for _ in range(batch * heads)])
    top = top.view(batch, heads, n_top)
    scale = 1 / math.sqrt(head_dim)
    grad = torch.randn(batch, heads, length, value_dim)

    out, probs = kernels.attention_forward(queries.detach(), keys.detach(), values.detach(),
                                           top, scale, is_masked)
    grads = kernels.attention_backward(queries.detach(), keys.detach(), values.detach(), top,
                                       probs, grad, scale, is_masked)
    want_out, want_probs = _attention_by_autograd(queries, keys, values, top, is_masked)
    want_grads = torch.autograd.grad(want_out, [queries, keys, values], grad)

    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(probs, want_probs, rtol=1e-5, atol=1e-6)
    for got, want, given in zip(grads, want_grads, (queries, keys, values), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5)
        assert got.stride() == given.stride(), "laid out as its input: no copy on the way back"


@pytest.mark.parametrize(("n_elements", "p", "seed"), [
    (786_432, 0.05, 0), (1000, 0.5, 1), (50, 0.9, 2), (100_000, 0.001, 3)])
def test_drop_position_kernel_takes_the_same_gaps_as_the_aten_formula(
        kernels: native.Kernels, n_elements: int, p: float, seed: int) -> None:
    torch.manual_seed(seed)
    uniform = torch.rand(int(n_elements * p * 1.2) + 50)
    log_keep = math.log1p(-p)
    got = kernels.drop_positions(uniform, log_keep, 5, n_elements)
    gaps = torch.log1p(-uniform).div(log_keep).to(torch.int64)
    want = (gaps + 1).cumsum(0) + 4
    want = want[want < n_elements]
    assert torch.equal(got, want)


def test_drop_position_kernel_says_when_the_draws_ran_out(kernels: native.Kernels) -> None:
    torch.manual_seed(4)
    uniform = torch.rand(10)
    got = kernels.drop_positions(uniform, math.log1p(-0.5), 0, 10**9)
    assert got.numel() == 10  # every draw used: the caller draws more from got[-1] + 1
    assert bool((got.diff() >= 1).all())


def test_scale_and_zero_kernel_equals_mul_then_index_fill(kernels: native.Kernels) -> None:
    torch.manual_seed(5)
    x = torch.randn(32, 96, 64)
    drops = drop_positions(x.numel(), 0.05, CPU)
    want = torch.mul(x, 1 / 0.95)
    want.view(-1).index_fill_(0, drops, 0.0)
    got = kernels.scale_and_zero(x, 1 / 0.95, drops)
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _training_block(seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output and gradients of a gelu feed-forward block trained one step from ``seed``."""
    torch.manual_seed(seed)
    block = FeedForward(16, 64, 0.1, "gelu").train()
    x = torch.randn(4, 30, 16, requires_grad=True)
    grad = torch.randn(4, 30, 16)
    torch.manual_seed(seed + 1)
    out = block(x)
    return out.detach(), list(torch.autograd.grad(out, [x, *block.parameters()], grad))


def _prob_attention(seed: int, is_masked: bool) -> list[torch.Tensor]:
    """Output and input gradients of ProbSparse attention (the whole layer's inner part)."""
    torch.manual_seed(seed)
    inputs = [torch.randn(2, 48, 4, 16).transpose(1, 2).requires_grad_() for _ in range(3)]
    out = ProbAttention(is_masked=is_masked, factor=3)(*inputs)
    return [out.detach(), *torch.autograd.grad(out.square().sum(), inputs)]


def test_training_computes_the_same_with_and_without_native_kernels(
        kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch, fresh_kernels: None) -> None:
    with_out, with_grads = _training_block(6)
    with_attention = _prob_attention(7, False) + _prob_attention(8, True)
    monkeypatch.setenv(native.DISABLE_VARIABLE, "0")
    native.kernels.cache_clear()
    assert native.kernels() is None
    plain_out, plain_grads = _training_block(6)
    plain_attention = _prob_attention(7, False) + _prob_attention(8, True)

    assert torch.equal(with_out == 0, plain_out == 0), "the same positions dropped"
    torch.testing.assert_close(with_out, plain_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(with_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(with_attention, plain_attention, strict=True):  # same queries kept
        # sums in another order; the gradients of a square of sums of 48 terms
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_an_environment_variable_turns_them_off(without_native: None) -> None:
    assert native.kernels() is None
    assert f"{native.DISABLE_VARIABLE}=0" in native.status().detail
    out, _ = _training_block(8)  # the ATen path
    assert out.shape == (4, 30, 16)


@pytest.mark.parametrize("setting", ["off", "False", " no "])
def test_the_variable_takes_the_usual_words_for_off(
        setting: str, monkeypatch: pytest.MonkeyPatch, fresh_kernels: None) -> None:
    monkeypatch.setenv(native.DISABLE_VARIABLE, setting)
    assert native.kernels() is None
    assert "turned off" in native.status().detail


def test_without_a_compiler_training_takes_the_aten_path(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_kernels: None) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing compiled there yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert native.kernels() is None
    status = native.status()
    assert not status.loaded and "unavailable" in status.detail and "no-such-cc" in status.detail
    out, grads = _training_block(9)
    assert out.shape == (4, 30, 16) and all(g.isfinite().all() for g in grads)


def _load_in_a_new_process(cache: Path) -> str:
    """``native.status().detail`` after ``native.kernels()`` in a fresh interpreter."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-c", LOAD_AND_REPORT], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_the_library_is_built_once_then_reused_and_rebuilt_when_damaged(
        kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        fresh_kernels: None) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.kernels() is not None
    (library,) = (tmp_path / "informer-nas" / "native").glob("*.so")
    assert native.status().detail == f"loaded from {library}"
    built = library.stat()

    assert _load_in_a_new_process(tmp_path) == f"loaded from {library}"
    assert library.stat().st_ino == built.st_ino, "a later process loads the cached file"

    # a damaged file (a copy cut short, say); replaced, not written over: this process has
    # the library mapped, and truncating a mapped file would crash it
    damaged = library.with_suffix(".damaged")
    damaged.write_bytes(b"not a shared library")
    os.replace(damaged, library)
    assert _load_in_a_new_process(tmp_path) == f"loaded from {library}"
    assert library.stat().st_size > 1000, "built anew"
    assert sorted(p.name for p in library.parent.iterdir()) == [library.name], "no leftovers"


def test_cc_may_carry_options(kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch,
                              tmp_path: Path, fresh_kernels: None) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None  # the kernels fixture found one
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", f"{compiler} -DUNUSED_BY_THE_KERNELS=1")
    assert native.kernels() is not None, native.status().detail
    assert str(tmp_path) in native.status().detail


def test_outputs_are_float32_whatever_the_default_dtype(kernels: native.Kernels) -> None:
    torch.manual_seed(12)
    queries = torch.randn(2, 2, 8, 4)
    sample = torch.randint(8, (8, 3))
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        sparsity = kernels.sparsity(queries, queries, sample)
        out, probs = kernels.attention_forward(queries, queries, queries,
                                               sparsity.topk(3, dim=-1).indices, 0.5, False)
    finally:
        torch.set_default_dtype(before)
    assert sparsity.dtype == out.dtype == probs.dtype == torch.float32
    scores = (queries @ queries.transpose(-1, -2))[:, :, torch.arange(8).unsqueeze(1), sample]
    torch.testing.assert_close(sparsity, scores.amax(-1) - scores.sum(-1) / 8)


def test_processes_building_at_once_agree_on_one_library(
        kernels: native.Kernels, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    builders = [subprocess.Popen([sys.executable, "-c", LOAD_AND_REPORT], env=env, text=True,
                                 stdout=subprocess.PIPE) for _ in range(3)]
    details = {builder.communicate(timeout=120)[0].strip() for builder in builders}
    (library,) = (tmp_path / "informer-nas" / "native").iterdir()  # no partial files left
    assert details == {f"loaded from {library}"}


def test_a_killed_build_leaves_nothing_that_lasts(
        kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        fresh_kernels: None) -> None:
    cache = tmp_path / "informer-nas" / "native"
    cache.mkdir(parents=True)
    killed, running = cache / ".kernels-old.so.a1.tmp", cache / ".kernels-new.so.b2.tmp"
    killed.write_bytes(b"half a library")
    running.write_bytes(b"a build in progress")
    an_hour_ago = time.time() - 3600
    os.utime(killed, (an_hour_ago, an_hour_ago))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.kernels() is not None
    assert not killed.exists() and running.exists()


def test_a_failed_build_leaves_no_partial_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_kernels: None) -> None:
    compiler = tmp_path / "cc"
    compiler.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo fake 1.0 && exit 0\n"
                        "echo 'kernels.c:1: error: out of space' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(compiler))
    assert native.kernels() is None
    assert "cc failed: kernels.c:1: error: out of space" in native.status().detail
    assert list((tmp_path / "cache" / "informer-nas" / "native").iterdir()) == []


def test_an_unwritable_cache_falls_back_to_a_temporary_directory(
        kernels: native.Kernels, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        fresh_kernels: None) -> None:
    not_a_directory = tmp_path / "cache-is-a-file"
    not_a_directory.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_directory))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert native.kernels() is not None, native.status().detail
    assert str(tmp_path / "tmp") in native.status().detail


def test_a_temporary_directory_of_someone_else_is_not_used(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_kernels: None) -> None:
    not_a_directory = tmp_path / "cache-is-a-file"
    not_a_directory.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_directory))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"informer-nas-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could have put a library there
    assert native.kernels() is None
    assert "is not this user's own directory" in native.status().detail


def test_cache_dir_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.cache_dir() == tmp_path / "informer-nas" / "native"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert native.cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "informer-nas" / \
        "native"
