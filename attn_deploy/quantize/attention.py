"""``--quantize-attention``: swap the FusedAttention body for the variant with an int8 P·V product."""

from __future__ import annotations

import onnx

from attn_deploy.artifact.graph import default_opset
from attn_deploy.ops.bodies import looped_body
from attn_deploy.ops.contract import DOMAIN, OP_TYPE


def use_int8_attention_body(model: onnx.ModelProto) -> bool:
    """Replace the model's FusedAttention function in place; False if it has none.

    The node-level contract (inputs, attributes, domain) is unchanged, so a TensorRT plugin still
    matches the node; only the reference body that ONNX Runtime inlines differs.
    """
    for i, function in enumerate(model.functions):
        if function.domain == DOMAIN and function.name == OP_TYPE:
            with_bias = len(function.input) > 3
            model.functions[i].CopyFrom(looped_body(default_opset(model), with_bias=with_bias, int8_pv=True))
            return True
    return False
