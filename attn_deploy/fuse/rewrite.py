"""Replace one matched attention by a FusedAttention node (plus the reshapes its layout needs)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from attn_deploy.fuse.graph import Builder, constant_array, dims, rank, static_dim, swap_last
from attn_deploy.fuse.match import Attention, Bias, Operand
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, node_attributes

#: Unit axes that turn a rank-r token layout into [B, H, N, d].
_UNIT_AXES = {2: [0, 1], 3: [1], 4: []}


def _in_layout(b: Builder, operand: Operand) -> ir.Value:
    return b.transpose(operand.value, operand.perm) if operand.perm else operand.value


def _to_4d(b: Builder, value: ir.Value, match: Attention) -> ir.Value:
    if match.heads is not None:  # [B, N, H*d] -> [B, N, H, d] -> [B, H, N, d]
        split = b.op("Reshape", [value, b.ints([0, 0, match.heads, -1])])
        return b.transpose(split, [0, 2, 1, 3])
    if match.rank == 5:  # [B, G, H, N, d] -> [B·G, H, N, d]
        return b.op("Reshape", [value, b.op("Concat", [b.ints([-1]), b.op("Shape", [value], start=2)], axis=0)])
    return b.unsqueeze(value, _UNIT_AXES[match.rank])


def _from_4d(b: Builder, value: ir.Value, match: Attention, q: ir.Value) -> ir.Value:
    """``value [B, H, Nq, dv]`` back in the layout of ``q`` (Q as the graph had it)."""
    if match.heads is not None:
        return b.op("Reshape", [b.transpose(value, [0, 2, 1, 3]), b.ints([0, 0, -1])])
    if match.rank == 5:  # [B·G, H, Nq, dv] -> [B, G, H, Nq, dv]
        lead = b.op("Shape", [q], start=0, end=2)
        return b.op("Reshape", [value, b.op("Concat", [lead, b.op("Shape", [value], start=1)], axis=0)])
    return b.squeeze(value, _UNIT_AXES[match.rank])


def _float_dtype(value: ir.Value) -> np.dtype:
    return value.dtype.numpy() if value.dtype is not None and value.dtype.is_floating_point() else np.dtype(np.float32)


def _broadcast_term(b: Builder, term: Bias) -> ir.Value | None:
    """A term added to the scores' ``[B, nW, ...]`` view, as a term of the scores' own rank that still
    broadcasts: Swin's per-window mask ``[1, nW, 1, N, N]`` becomes ``[B·nW, 1, N, N]`` (expanded
    over ``B, nW`` only, not copied at all when it already spans them), never ``[B·nW, H, N, N]``.

    None when the view is not the scores' first dimension split in two, or the term's other
    dimensions are not static (the caller then expands the term to the view's full shape).
    """
    if term.reshape is None or not term.split_first:
        return None
    expand_to = term.reshape[0]
    rank_ = static_dim(expand_to, 0)
    shape = dims(term.value)
    if rank_ is None or rank_ < 3 or shape is None or len(shape) > rank_:
        return None
    padded = [1] * (rank_ - len(shape)) + list(shape)
    rest = padded[2:]
    if not all(isinstance(d, int) for d in rest):
        return None
    value = b.unsqueeze(term.value, list(range(rank_ - len(shape)))) if len(shape) < rank_ else term.value
    view = constant_array(expand_to)
    spans = view is not None and (padded[:2] == [int(view[0]), int(view[1])] or padded[:2] == [1, 1])
    if not spans:
        leading = b.op("Slice", [expand_to, b.ints([0]), b.ints([2]), b.ints([0])])
        value = b.op("Expand", [value, b.op("Concat", [leading, b.ints(rest)], axis=0)])  # type: ignore[arg-type]
    return b.op("Reshape", [value, b.ints([-1, *rest])])  # type: ignore[list-item]


def _bias(b: Builder, match: Attention) -> ir.Value | None:
    total: ir.Value | None = None
    dtype = _float_dtype(match.q.value)
    for term in match.bias:
        value = term.value
        if term.reshape is not None:
            kept = _broadcast_term(b, term)
            if kept is not None:
                value = kept
            else:
                expand_to, reshape_to, allowzero = term.reshape
                value = b.op("Reshape", [b.op("Expand", [value, expand_to]), reshape_to], allowzero=allowzero)
        if match.bool_mask or term.mask is not None:  # additive 0 / -inf; ONNX Attention's True attends
            zero, minus_inf = b.const(np.zeros((), dtype)), b.const(np.array(-np.inf, dtype))
            value = b.op("Where", [value, minus_inf, zero] if term.mask else [value, zero, minus_inf])
        if term.factor != 1.0:
            value = b.op("Mul", [value, b.const(np.array(term.factor, _float_dtype(value)))])
        if match.heads is None and match.rank == 3 and (term.reshape is not None or rank(term.value) == 3):
            value = b.unsqueeze(value, [1])  # [B, Nq, Nk] -> [B, 1, Nq, Nk]
        if match.rank == 5 and rank(value) == 5:
            value = b.squeeze(value, [0])  # [1, 1, H, Nq, Nk] (see scores._check_rank5_biases)
        total = value if total is None else b.op("Add", [total, value])
    return total


def fuse_attention(graph: ir.Graph, match: Attention, name: str) -> ir.Node:
    """Insert the FusedAttention node for ``match`` before its anchor and reroute its output.

    The replaced nodes stay in the graph, unused, for dead-node removal to collect.
    """
    b = Builder(name)
    q_in = _in_layout(b, match.q)
    if match.q_factor is not None:
        factor = match.q_factor
        if factor.dtype != q_in.dtype or q_in.dtype is None:
            factor = b.op("CastLike", [factor, q_in])
        q_in = b.op("Mul", [q_in, factor])
    q, k, v = (_to_4d(b, value, match) for value in (q_in, _in_layout(b, match.k), _in_layout(b, match.v)))
    bias = _bias(b, match)
    inputs = [q, k, v] + ([bias] if bias is not None else [])
    out4 = b.op(OP_TYPE, inputs, domain=DOMAIN, **node_attributes(match.scale))
    fused = b.nodes[-1]
    fused.name = name
    result = _from_4d(b, out4, match, q_in)
    if match.transpose_output:
        result = b.transpose(result, swap_last(match.rank))
    if match.nan_to_zero:
        zero = b.const(np.zeros((), _float_dtype(match.v.value)))
        result = b.op("Where", [b.op("IsNaN", [result]), zero, result])
    graph.insert_before(match.anchor, b.nodes)
    old = match.output
    was_output = old.is_graph_output()
    old.replace_all_uses_with(result, replace_graph_outputs=True)
    if was_output:
        old_name = old.name
        old.name = f"{old_name}_unfused"
        result.name = old_name
        result.type, result.shape = old.type, old.shape  # a graph output must keep its declared type
    return fused
