"""How both ONNX exporters turn ``torch.ops.attn_deploy.fused_attention`` into one node.

The node carries ``scale`` plus ``plugin_namespace``/``plugin_version`` so TensorRT's parser
prefers a registered plugin over the function body. The body itself is attached after export
(``export.finalize``), because onnxscript's version converter would inline it.
"""

from __future__ import annotations

from typing import Any

import torch

from attn_deploy.ops.contract import (
    DOMAIN,
    OP_TYPE,
    OPSET_VERSION,
    node_attributes,
)
from attn_deploy.ops.schema import fused_attention_schema

_TORCH_OP_NAME = "attn_deploy::fused_attention"
_registered_torchscript_opsets: set[int] = set()


def dynamo_translation_table() -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``."""
    from onnxscript import values

    # The schema is passed, not registered: Opset.__getattr__ would look it up in onnx's global registry.
    fused = values.Op(values.Opset(DOMAIN, OPSET_VERSION), OP_TYPE, fused_attention_schema())

    def fused_attention(q: Any, k: Any, v: Any, bias: Any = None, *, scale: float) -> Any:
        inputs = (q, k, v) if bias is None else (q, k, v, bias)
        return fused(*inputs, **node_attributes(scale))

    return {torch.ops.attn_deploy.fused_attention.default: fused_attention}


def register_torchscript_symbolic(opset: int) -> None:
    """Register the symbolic for ``torch.onnx.export(dynamo=False)`` at ``opset`` (idempotent)."""
    if opset in _registered_torchscript_opsets:
        return
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "v", "v", "v", "f")
    def fused_attention(g: Any, q: Any, k: Any, v: Any, bias: Any, scale: float) -> Any:
        inputs = [q, k, v] if symbolic_helper._is_none(bias) else [q, k, v, bias]
        attrs = node_attributes(scale)
        out = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            *inputs,
            scale_f=attrs["scale"],
            plugin_namespace_s=attrs["plugin_namespace"],
            plugin_version_s=attrs["plugin_version"],
        )
        q_type, v_type = q.type(), v.type()
        sizes_q, sizes_v = q_type.varyingSizes(), v_type.varyingSizes()
        if sizes_q is not None and sizes_v is not None and len(sizes_q) == 4 and len(sizes_v) == 4:
            out.setType(q_type.with_sizes([*sizes_q[:-1], sizes_v[-1]]))
        else:
            out.setType(q_type)
        return out

    torch.onnx.register_custom_op_symbolic(_TORCH_OP_NAME, fused_attention, opset)  # type: ignore[attr-defined]
    _registered_torchscript_opsets.add(opset)
