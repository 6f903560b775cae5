"""The standard ONNX ``Attention`` op (opset 23+), where it fits the contract.

Fits: no KV cache (``past_key``/``past_value``/``nonpad_kv_seqlen`` absent, ``present_*`` and
``qk_matmul_output`` unused), ``is_causal = 0``, ``softcap = 0``, as many K/V heads as Q heads.
Then ``Y = softmax(scale * Q @ K^T + mask) @ V`` with a float mask, or with a boolean mask
turned into ``Where(mask, 0, -inf)`` (True attends), which is the op's own definition: exact.
``scale`` defaults to ``1/sqrt(dk)`` (dk must be static). Inputs are 4-D ``[B, H, N, d]`` or 3-D
``[B, N, H*d]`` with ``q_num_heads``/``kv_num_heads``, split into heads around the node.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from attn_deploy.fuse.graph import is_op, rank, static_dim
from attn_deploy.fuse.match import Attention, NearMiss

OP = "Attention"


def _present(node: ir.Node, index: int, *, output: bool = False) -> bool:
    values = node.outputs if output else node.inputs
    if index >= len(values) or values[index] is None:
        return False
    value = values[index]
    return not output or bool(value.consumers()) or value.is_graph_output()  # type: ignore[union-attr]


def match(node: ir.Node) -> Attention | None:
    if not is_op(node, OP):
        return None
    if any(_present(node, i) for i in (4, 5, 6)):
        raise NearMiss("Attention with a KV cache (past_key/past_value/nonpad_kv_seqlen)")
    if any(_present(node, i, output=True) for i in (1, 2, 3)):
        raise NearMiss("Attention whose present_key/present_value/qk_matmul_output is used")
    if node.attributes.get_int("is_causal", 0):
        raise NearMiss("Attention with is_causal=1")
    if node.attributes.get_float("softcap", 0.0):
        raise NearMiss("Attention with softcap (not plain softmax)")
    q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
    ranks = {rank(q), rank(k), rank(v)}
    heads: int | None = None
    if ranks == {4}:
        hq, hk = static_dim(q, 1), static_dim(k, 1)
        if hq is None or hk is None or hq != hk or static_dim(v, 1) != hq:
            raise NearMiss("Attention with grouped K/V heads or unknown head counts")
        dk = static_dim(q, 3)
    elif ranks == {3}:
        heads = node.attributes.get_int("q_num_heads", 0)
        if not heads or node.attributes.get_int("kv_num_heads", 0) != heads:
            raise NearMiss("3-D Attention with grouped K/V heads or no q_num_heads")
        width = static_dim(q, 2)
        dk = None if width is None else width // heads
    else:
        raise NearMiss("Attention inputs of unknown or mixed rank")
    scale = node.attributes.get_float("scale", 0.0) if "scale" in node.attributes else None
    if scale is None:
        if dk is None:
            raise NearMiss("Attention with a default scale and a dynamic head size")
        scale = 1.0 / math.sqrt(dk)
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    bool_mask = mask is not None and mask.dtype == ir.DataType.BOOL
    if mask is not None and heads is None and rank(mask) is None:
        raise NearMiss("Attention mask of unknown rank")
    return Attention.of_op(
        node, (q, k, v), mask,  # type: ignore[arg-type]
        pattern=f"onnx Attention ({'3-D' if heads else '4-D'}{', mask' if mask is not None else ''})",
        rank=4 if heads is None else 3,
        scale=scale,
        bool_mask=bool_mask,
        heads=heads,
    )
