"""Whether a Softmax the rules left alone is attention (``softmax(Q·Kᵀ)·V``) or something else.

A classifier's softmax reads a product with constant weights and feeds no product; attention's
reads a product of two computed tensors (Q·Kᵀ) and feeds one (·V). Export warns about the first
kind only. Ops that are attention by definition (ONNX ``Attention``, ``MultiHeadAttention``) are.
"""

from __future__ import annotations

import onnx_ir as ir

from attn_deploy.fuse.graph import constant_array, is_op, producer

#: How many elementwise/layout steps may sit between the softmax and either product.
_MAX_STEPS = 8
#: Scatters and slices too: MViT adds its relative-position terms to a slice of the scores in place
#: (``attn[:, :, 1:, 1:] += rel``), which exports as Slice, Add and ScatterND.
_UP_THROUGH = ("Mul", "Div", "Add", "Sub", "Reshape", "Transpose", "Where", "Cast", "Identity", "Unsqueeze", "Squeeze",
               "ScatterND", "ScatterElements", "Slice", "Concat", "Pad", "Expand")
_DOWN_THROUGH = ("Mul", "Div", "Where", "IsNaN", "Transpose", "Cast", "Identity", "Dropout", "Reshape")


def _computed_product(node: ir.Node | None) -> bool:
    """A MatMul or Einsum of two tensors that are not constants (Q·Kᵀ or P·V, not x·W)."""
    return is_op(node, "MatMul", "Einsum") and all(v is not None and constant_array(v) is None and v.const_value is None for v in node.inputs)  # type: ignore[union-attr]


def _reads_product(softmax: ir.Node) -> bool:
    frontier, seen = [producer(softmax.inputs[0])], set()
    for _ in range(_MAX_STEPS):
        nxt: list[ir.Node | None] = []
        for node in frontier:
            if node is None or node in seen:
                continue
            seen.add(node)
            if _computed_product(node):
                return True
            if is_op(node, *_UP_THROUGH):
                nxt += [producer(v) for v in node.inputs]
        frontier = nxt
    return False


def _feeds_product(softmax: ir.Node) -> bool:
    frontier, seen = list(softmax.outputs), set()
    for _ in range(_MAX_STEPS):
        nxt: list[ir.Value] = []
        for value in frontier:
            for user in value.consumers():
                if user in seen:
                    continue
                seen.add(user)
                if _computed_product(user):
                    return True
                if is_op(user, *_DOWN_THROUGH):
                    nxt += list(user.outputs)
        frontier = nxt
    return False


def looks_like_attention(node: ir.Node) -> bool:
    """``node`` (a Softmax or an attention op left alone) computes attention."""
    if not is_op(node, "Softmax"):
        return True
    return _reads_product(node) and _feeds_product(node)
