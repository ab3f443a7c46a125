"""informer-nas: autonomous architecture and hyper-parameter search for Informer on ETT.

Heavy modules (torch, the Agents SDK) are imported lazily so that ``nas --help`` is fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["run_nas_optimization", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "run_nas_optimization":
        from informer_nas.api import run_nas_optimization

        return run_nas_optimization
    raise AttributeError(f"module 'informer_nas' has no attribute {name!r}")
