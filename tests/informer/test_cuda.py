"""The trainer on a CUDA device: the run directory, CPU-equal outputs, mixed precision.

Skipped without a CUDA device. On a GPU machine, ``bash benchmarks/device_check.sh`` runs
this file together with the CUDA throughput figures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from informer_nas.informer.config import InformerConfig, ModelSection
from informer_nas.informer.model import Informer
from informer_nas.informer.presets import preset_config
from informer_nas.informer.training import Trainer

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device (on a GPU machine: bash benchmarks/device_check.sh)",
)


def _tiny_cuda(**training: Any) -> InformerConfig:
    config = preset_config("tiny").to_dict()
    config["training"].update(device="cuda", num_threads=None, **training)
    return InformerConfig.model_validate(config)


def test_cuda_training_writes_every_run_file(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(f"CONFIG = {_tiny_cuda(max_epochs=2).to_dict()!r}\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "informer_nas.informer.train", "--config", str(config),
         "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["device"].startswith("cuda")
    assert metrics["epochs_run"] == 2 and math.isfinite(metrics["test_mse"])
    for name in ("config_used.py", "history.json", "learning_curve.png", "best_model.pt",
                 "train.log"):
        assert (run_dir / name).stat().st_size > 0, name


@pytest.mark.parametrize("options", [{}, {"revin": True, "decomp": True, "linear_skip": True},
                                     {"embed": "fixed", "distil": False, "mix": False}])
def test_cuda_forward_and_gradients_equal_the_cpu_ones(options: dict[str, Any]) -> None:
    # factor 100 keeps every query and key: ProbSparse is exact, so no draw differs by device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cfg = ModelSection(d_model=32, n_heads=4, d_ff=64, factor=100, dropout=0.0, **options)
    cpu = Informer(cfg, 7, 7, 7, 24, "h", 96).eval()
    gpu = Informer(cfg, 7, 7, 7, 24, "h", 96).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    inputs = [torch.randn(4, 96, 7), torch.rand(4, 96, 4) - 0.5,
              torch.cat([torch.randn(4, 48, 7), torch.zeros(4, 24, 7)], 1),
              torch.rand(4, 72, 4) - 0.5]
    if options.get("embed") == "fixed":
        inputs[1] = torch.randint(0, 7, (4, 96, 4)).float()
        inputs[3] = torch.randint(0, 7, (4, 72, 4)).float()
    out_cpu = cpu(*inputs)
    out_gpu = gpu(*(x.cuda() for x in inputs))
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-4)
    out_cpu.square().sum().backward()
    out_gpu.square().sum().backward()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        assert p_cpu.grad is not None and p_gpu.grad is not None, name
        torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, rtol=1e-3, atol=1e-4,
                                   msg=name)


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
def test_mixed_precision_trains_to_finite_scores(half: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if half == "float16":  # the path of GPUs without bfloat16: a gradient scaler
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: False)
    elif not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    trainer = Trainer(_tiny_cuda(amp=True, max_epochs=2))
    assert trainer.amp_dtype == getattr(torch, half)
    assert trainer.grad_scaler.is_enabled() == (half == "float16")
    result = trainer.fit()
    assert result.status == "ok", result.reason
    assert result.val is not None and result.test is not None
    assert math.isfinite(result.val.mse) and math.isfinite(result.test.mse)
    assert result.history[-1].train_loss < result.history[0].train_loss * 2
