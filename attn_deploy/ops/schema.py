"""The FusedAttention contract as an ``onnx.defs.OpSchema`` (not registered globally).

The dynamo exporter's onnxscript evaluator needs a schema to emit a node; the schema is also the
machine-readable form of DESIGN.md §2.
"""

from __future__ import annotations

import functools

from onnx.defs import OpSchema

from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION


@functools.cache
def fused_attention_schema() -> OpSchema:
    optional = OpSchema.FormalParameterOption.Optional
    return OpSchema(
        OP_TYPE,
        DOMAIN,
        OPSET_VERSION,
        "softmax(scale * Q @ K^T + bias, axis=-1) @ V; softmax and accumulation in float32.",
        inputs=[
            OpSchema.FormalParameter("Q", "T", "queries [B, H, Nq, dk]"),
            OpSchema.FormalParameter("K", "T", "keys [B, H, Nk, dk]"),
            OpSchema.FormalParameter("V", "T", "values [B, H, Nk, dv]"),
            OpSchema.FormalParameter("bias", "B", "additive bias broadcastable to [B, H, Nq, Nk]", param_option=optional),
        ],
        outputs=[OpSchema.FormalParameter("O", "T", "[B, H, Nq, dv]")],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)"], "attention dtype"),
            ("B", ["tensor(float)", "tensor(float16)"], "bias dtype"),
        ],
        attributes=[
            OpSchema.Attribute("scale", OpSchema.AttrType.FLOAT, "multiplies Q @ K^T", required=True),
            OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace", required=False),
            OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version", required=False),
        ],
    )
