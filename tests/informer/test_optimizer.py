"""The fused Adam / AdamW of ``build_optimizer``: chosen when possible, same numbers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from informer_nas.informer.config import ModelSection, TrainingSection
from informer_nas.informer.model import Informer
from informer_nas.informer.optimizers import build_optimizer

torch.set_num_threads(1)


def _training(name: str) -> TrainingSection:
    return TrainingSection.model_validate({
        "optimizer_class": name,
        "optimizer_params": {"lr": 1e-3, "weight_decay": 0.01, "momentum": 0.9},
    })


def _train(name: str, fused: bool) -> dict[str, torch.Tensor]:
    """Five steps of a small Informer (dropout off) with the fused or the looped optimizer.

    No distilling: the bias of a convolution followed by BatchNorm has a zero gradient too.
    """
    torch.manual_seed(0)
    model = Informer(ModelSection(d_model=16, n_heads=2, d_ff=32, dropout=0.0, attn="full",
                                  e_layers=2, d_layers=1, distil=False), 3, 3, 3, pred_len=4)
    optimizer = build_optimizer(model.parameters(), _training(name))
    assert optimizer.defaults.get("fused") is (True if name in ("Adam", "AdamW") else None)
    if not fused:
        for group in optimizer.param_groups:
            group["fused"] = False
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        x_enc = torch.randn(4, 12, 3, generator=generator)
        marks = torch.rand(4, 12, 4, generator=generator) - 0.5
        x_dec = torch.cat([x_enc[:, -4:], torch.zeros(4, 4, 3)], dim=1)
        target = torch.randn(4, 4, 3, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss = (model(x_enc, marks, x_dec, marks[:, -8:]) - target).square().mean()
        loss.backward()
        optimizer.step()
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "RMSprop"])
def test_fused_optimizer_matches_the_per_parameter_loop(name: str) -> None:
    fused, looped = _train(name, fused=True), _train(name, fused=False)
    for key, value in fused.items():
        if key.endswith("key_projection.bias"):
            # softmax ignores a shift shared by a row's scores: the true gradient is 0, the
            # computed one rounding noise that Adam rescales to +-lr in either version
            continue
        torch.testing.assert_close(value, looped[key], rtol=1e-5, atol=1e-6, msg=key)


def test_optimizer_is_not_fused_for_parameter_groups_or_integer_tensors() -> None:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    assert not build_optimizer(groups, _training("Adam")).defaults.get("fused")
    weight = torch.nn.Parameter(torch.zeros(2))
    assert build_optimizer([weight], _training("AdamW")).defaults["fused"] is True


def test_a_training_step_does_not_import_the_compiler() -> None:
    code = (
        "import sys, torch\n"
        "from informer_nas.informer.presets import preset_config\n"
        "from informer_nas.informer.training import Trainer\n"
        "trainer = Trainer(preset_config('tiny'))\n"
        "trainer.train_epoch(1, max_steps=2)\n"
        "state = trainer.optimizer.state_dict()\n"
        "trainer.optimizer.load_state_dict(state)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.strip().splitlines()[-1] == "False"
