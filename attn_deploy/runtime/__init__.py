"""Backends behind one interface: named numpy inputs in, named numpy outputs out (runners are context managers).

Names are imported on first use: checking ONNX models against each other must not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attn_deploy.runtime.base import Runner, RunnerBase
    from attn_deploy.runtime.ort_runner import OrtRunner
    from attn_deploy.runtime.torch_runner import TorchRunner

_MODULES = {"Runner": "base", "RunnerBase": "base", "OrtRunner": "ort_runner", "TorchRunner": "torch_runner"}

__all__ = ["OrtRunner", "Runner", "RunnerBase", "TorchRunner"]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
