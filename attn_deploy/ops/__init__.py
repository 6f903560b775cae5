"""The one op every stage shares: ``attn_deploy::FusedAttention`` (DESIGN.md §2).

``contract`` (names, block sizes) imports nothing heavy; the PyTorch op loads torch on first use.
"""

from __future__ import annotations

from typing import Any

from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION

__all__ = ["DOMAIN", "OPSET_VERSION", "OP_TYPE", "fused_attention", "reference_attention"]


def __getattr__(name: str) -> Any:
    if name in ("fused_attention", "reference_attention"):
        from attn_deploy.ops import torch_op

        return getattr(torch_op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
