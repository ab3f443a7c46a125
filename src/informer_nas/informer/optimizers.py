"""The trainer's optimizers: fused Adam / AdamW where possible, no ``torch._dynamo`` import.

``torch.optim`` wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict``,
``load_state_dict`` and every ``step`` in guards that ``import torch._dynamo`` on first use
(about 2 s of CPU per process, paid by every NAS trial, for a compiler the trainer never
uses). The classes below are the same optimizers with those methods unwrapped: the same
code runs, under ``torch.no_grad()`` as ``torch.optim`` runs it (``differentiable=False``).
If a torch release stops exposing the wrapped functions, the plain classes are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from informer_nas.informer.config import TrainingSection

FUSED_OPTIMIZERS = ("Adam", "AdamW")
FUSED_DEVICES = ("cpu", "cuda")
_UNWRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _without_dynamo_guards(base: type[Optimizer]) -> type[Optimizer]:
    """``base`` with its dynamo-guarded methods replaced by the functions they wrap."""
    methods: dict[str, Callable[..., Any] | None] = {
        name: getattr(getattr(base, name), "__wrapped__", None) for name in _UNWRAPPED
    }
    step = getattr(base.step, "__wrapped__", None)
    if step is None or any(method is None for method in methods.values()):
        return base

    def guarded_step(self: Optimizer, closure: Callable[[], float] | None = None) -> Any:
        if self.defaults.get("differentiable"):
            return base.step(self, closure)
        with torch.no_grad():
            return step(self, closure)

    namespace: dict[str, Any] = {**methods, "step": guarded_step, "__doc__": base.__doc__}
    return type(base.__name__, (base,), namespace)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    name: _without_dynamo_guards(base) for name, base in (
        ("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW), ("SGD", torch.optim.SGD),
        ("RMSprop", torch.optim.RMSprop),
    )
}


def build_optimizer(parameters: Any, training: TrainingSection) -> Optimizer:
    """The configured optimizer; momentum is passed only to SGD and RMSprop.

    Adam and AdamW use torch's fused kernel (one pass over all parameters; ~5x faster
    steps than the per-parameter loop on CPU, the same update to float rounding) when
    every parameter is a floating-point tensor on a CPU or CUDA device.
    """
    params, name = training.optimizer_params, training.optimizer_class
    parameters = list(parameters)
    kwargs: dict[str, Any] = {"lr": params.lr, "weight_decay": params.weight_decay}
    if name in ("SGD", "RMSprop"):
        kwargs["momentum"] = params.momentum
    if name in FUSED_OPTIMIZERS and _can_fuse(parameters):
        kwargs["fused"] = True
    return OPTIMIZERS[name](parameters, **kwargs)


def _can_fuse(parameters: list[Any]) -> bool:
    """True for a non-empty list of floating-point tensors on CPU or CUDA (not groups)."""
    return bool(parameters) and all(
        isinstance(p, torch.Tensor) and p.is_floating_point() and p.device.type in FUSED_DEVICES
        for p in parameters
    )
