"""``lower``: rewrite FusedAttention nodes for one target (ONNX Runtime now; TensorRT in ``trt.py``).

``lower_model(model, target="ort", max_attn_mem=256 MiB, prefer="auto") -> (model, choices)`` is the
library entry point; ``lower_file`` adds file I/O and the manifest; ``inspect_model`` reports what
each target would run. Names are imported on first use, so ``inspect`` does not load onnx-ir.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attn_deploy.lower.api import TARGETS, LowerResult, lower_artifact, lower_file, lower_model
    from attn_deploy.lower.choice import DEFAULT_MAX_ATTN_MEM, NodeChoice
    from attn_deploy.lower.inspect import inspect_file, inspect_model

_MODULES = {
    "TARGETS": "api", "LowerResult": "api", "lower_artifact": "api", "lower_file": "api", "lower_model": "api",
    "DEFAULT_MAX_ATTN_MEM": "choice", "NodeChoice": "choice",
    "inspect_file": "inspect", "inspect_model": "inspect",
}

__all__ = ["DEFAULT_MAX_ATTN_MEM", "TARGETS", "LowerResult", "NodeChoice", "inspect_file", "inspect_model", "lower_artifact", "lower_file", "lower_model"]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
