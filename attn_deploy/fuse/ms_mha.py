"""``com.microsoft.MultiHeadAttention`` (ONNX Runtime contrib op), where it fits the contract.

Fits: separate 3-D query/key/value ``[B, N, H*d]`` (not packed, no 4-D key cache), no projection
``bias``, no ``key_padding_mask``, no past/present, ``unidirectional = 0``. Then the op is
``softmax(scale * Q_h @ K_h^T + attention_bias) @ V_h`` per head ``h`` of ``num_heads``, with
``attention_bias`` broadcastable to ``[B, H, Nq, Nk]`` and ``scale`` (0 = ``1/sqrt(d)``): exactly
the contract once the heads are split around the node.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from attn_deploy.fuse.graph import is_op, rank, static_dim
from attn_deploy.fuse.match import Attention, NearMiss

OP = "MultiHeadAttention"
DOMAIN = "com.microsoft"


def _given(node: ir.Node, index: int) -> bool:
    return index < len(node.inputs) and node.inputs[index] is not None


def match(node: ir.Node) -> Attention | None:
    if not is_op(node, OP, domain=DOMAIN):
        return None
    if not (_given(node, 1) and _given(node, 2)):
        raise NearMiss("MultiHeadAttention with packed QKV or packed KV")
    if _given(node, 3):
        raise NearMiss("MultiHeadAttention with a projection bias input")
    if _given(node, 4):
        raise NearMiss("MultiHeadAttention with key_padding_mask")
    if any(_given(node, i) for i in range(6, len(node.inputs))):
        raise NearMiss("MultiHeadAttention with a KV cache")
    if any(o.consumers() or o.is_graph_output() for o in node.outputs[1:]):
        raise NearMiss("MultiHeadAttention whose present outputs are used")
    if node.attributes.get_int("unidirectional", 0):
        raise NearMiss("MultiHeadAttention with unidirectional=1 (causal)")
    q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
    if {rank(q), rank(k), rank(v)} != {3}:
        raise NearMiss("MultiHeadAttention whose query/key/value are not all 3-D")
    heads = node.attributes.get_int("num_heads", 0)
    scale = node.attributes.get_float("scale", 0.0)
    if not scale:
        width = static_dim(q, 2)
        if not heads or width is None:
            raise NearMiss("MultiHeadAttention with a default scale and a dynamic hidden size")
        scale = 1.0 / math.sqrt(width // heads)
    bias = node.inputs[5] if _given(node, 5) else None
    return Attention.of_op(
        node, (q, k, v), bias,  # type: ignore[arg-type]
        pattern=f"com.microsoft.MultiHeadAttention{' (attention_bias)' if bias is not None else ''}",
        rank=3,
        scale=scale,
        heads=heads,
    )
