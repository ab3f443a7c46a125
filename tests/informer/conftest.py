"""Fixtures for the Informer's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from informer_nas.informer import native


@pytest.fixture(params=["native", "aten"])
def both_kernel_paths(request: pytest.FixtureRequest,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with the native CPU kernels, then with ATen's operators only.

    The native run skips where the kernels cannot be built here (it would repeat the ATen one).
    """
    native.kernels.cache_clear()
    if request.param == "aten":
        monkeypatch.setenv(native.DISABLE_VARIABLE, "0")
    elif native.kernels() is None:
        pytest.skip(f"no native kernels on this machine: {native.status().detail}")
    yield request.param
    native.kernels.cache_clear()
