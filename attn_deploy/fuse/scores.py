"""The score side every decomposed attention shares: ``MatMul -> [scale] -> [+ bias] -> Softmax(-1)``.

Walking up from a Softmax, accepted steps are multiplication or division by a one-element constant
(a scale; constants computed from static shapes count, as TorchScript computes ``1/sqrt(dk)``),
additions (the other operand is an additive bias) and a pair of Reshapes that view the scores
another way and back (Swin adds its shifted-window mask to a ``[B, nW, H, N, N]`` view of the
``[B*nW, H, N, N]`` scores; see ``_Region``). A scale met after an Add multiplies that bias
too, since ``c * (S + b) = c*S + c*b``. Q and K^T may carry their own scalar factors (torch.onnx
applies ``sqrt(scale)`` to each); ``(a*Q) @ (b*K^T) = a*b * Q @ K^T`` exactly, and scalar factors
commute with the transposes peeled off K^T. Anything else (softmax on another axis, a scale that
is not constant, a multiplicative mask) raises ``NearMiss`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from attn_deploy.fuse.graph import (
    compose,
    constant_array,
    dims,
    is_op,
    producer,
    rank,
    scalar_constant,
    swap_last,
)
from attn_deploy.fuse.match import Attention, Bias, NearMiss, Operand

_MAX_STEPS = 16


@dataclass
class Scores:
    """``softmax input == scale * Q @ K^T + sum(bias)``, all of rank ``rank``."""

    softmax: ir.Node
    matmul: ir.Node
    q: Operand
    k: Operand
    rank: int
    scale: float
    bias: list[Bias] = field(default_factory=list)
    scale_sites: list[str] = field(default_factory=list)
    #: A factor of ``Q @ K^T`` constant along the keys (see ``Attention.q_factor``).
    q_factor: ir.Value | None = None

    def attention(self, *, pattern: str, product: ir.Node, v: Operand, **layout: Any) -> Attention:
        """The attention these scores start, ending in the weights-times-V ``product``."""
        return Attention(
            pattern=pattern, anchor=product, output=product.outputs[0], q=self.q, k=self.k, v=v,
            rank=self.rank, scale=self.scale, bias=self.bias, q_factor=self.q_factor, **layout,
        )


def _scalar_factor(node: ir.Node) -> tuple[float, ir.Value] | None:
    """``(factor, other input)`` if ``node`` multiplies or divides by a one-element constant."""
    if not is_op(node, "Mul", "Div"):
        return None
    a, b = node.inputs[0], node.inputs[1]
    c = scalar_constant(b)
    if c is not None and c != 0.0:
        return (c if node.op_type == "Mul" else 1.0 / c), a  # type: ignore[return-value]
    if node.op_type == "Mul":
        c = scalar_constant(a)
        if c is not None:
            return c, b  # type: ignore[return-value]
    return None


def _peel_scalars(value: ir.Value) -> tuple[ir.Value, float]:
    factor = 1.0
    for _ in range(_MAX_STEPS):
        found = _scalar_factor(producer(value))  # type: ignore[arg-type]
        if found is None:
            break
        f, value = found
        factor *= f
    return value, factor


def peel_transposes(value: ir.Value, *, scalars: bool = False) -> tuple[ir.Value, list[int], float]:
    """``value == factor * Transpose(source, perm)``, walking up through Transposes (and scalar
    factors if ``scalars``)."""
    r = rank(value) or 0
    perm = list(range(r))
    factor = 1.0
    for _ in range(_MAX_STEPS):
        node = producer(value)
        if is_op(node, "Transpose"):
            inner = list(node.attributes.get_ints("perm", list(range(r))[::-1]))  # type: ignore[union-attr]
            perm = compose(perm, inner)
            value = node.inputs[0]  # type: ignore[union-attr, assignment]
            continue
        found = _scalar_factor(node) if scalars and node is not None else None
        if found is None:
            break
        f, value = found
        factor *= f
    return value, perm, factor


def _reaches_matmul(value: ir.Value | None) -> bool:
    for _ in range(_MAX_STEPS):
        node = producer(value)
        if node is None:
            return False
        if is_op(node, "MatMul"):
            return True
        if not is_op(node, "Mul", "Div", "Add", "Reshape"):
            return False
        value = node.inputs[0]
    return False


def _is_size_vector(value: ir.Value | None, depth: int = 0) -> bool:
    """Whether ``value`` holds sizes only (no ``-1``/``0`` placeholders), so Expand can take it:
    positive constants, or arithmetic on ``Shape`` entries, as TorchScript builds ``view`` targets."""
    array = constant_array(value)
    if array is not None:
        return bool(np.issubdtype(array.dtype, np.number) and (array > 0).all())
    node = producer(value)
    if node is None or depth > _MAX_STEPS:
        return False
    if is_op(node, "Shape"):
        return True
    if is_op(node, "Concat", "Mul", "Div", "Add"):
        return all(_is_size_vector(v, depth + 1) for v in node.inputs if v is not None)
    if is_op(node, "Unsqueeze", "Squeeze", "Cast", "Identity", "Gather", "Slice"):
        return _is_size_vector(node.inputs[0], depth + 1)
    return False


def _depends_on(value: ir.Value | None, nodes: set[ir.Node]) -> bool:
    """Whether computing ``value`` needs any of ``nodes`` (including their shapes)."""
    seen: set[ir.Node] = set()
    stack = [producer(value)]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        if node in nodes:
            return True
        seen.add(node)
        stack.extend(producer(v) for v in node.inputs)
    return False


@dataclass
class _Region:
    """Scores viewed another way between two Reshapes: ``outer(inner(S) + m...)``.

    Exact as ``S + Reshape(Expand(m, inner target), outer target)`` (with the outer ``allowzero``;
    the inner target holds sizes only, so its own ``allowzero`` does not matter) when ``outer``
    gives back the shape ``inner`` took (checked on every dim but the first; the first then agrees
    since a Reshape keeps the element count and no term enlarges the view) and neither target is
    computed from the scores.
    """

    outer: ir.Node
    first_bias: int

    def close(self, inner: ir.Node, biases: list[Bias]) -> None:
        where = f"Reshape {self.outer.name!r}"
        inside = dims(inner.outputs[0])
        want, got = dims(inner.inputs[0]), dims(self.outer.outputs[0])
        if want is None or got is None or len(want) != len(got) or any(w is None or w != g for w, g in zip(want[1:], got[1:])):
            raise NearMiss(f"{where} does not give the scores back the shape they had before they were reshaped")
        expand_to, reshape_to = inner.inputs[1], self.outer.inputs[1]
        if not _is_size_vector(expand_to):
            raise NearMiss(f"the view of the scores before {where} has a shape computed at run time with -1 or 0 entries")
        for bias in biases[self.first_bias:]:
            shape = dims(bias.value)
            if shape is None or inside is None or len(shape) > len(inside):
                raise NearMiss(f"a term added to the reshaped scores before {where} has an unknown or larger rank")
            for d, v in zip(shape[::-1], inside[::-1]):
                if isinstance(d, int) and d != 1 and isinstance(v, int) and d != v:
                    raise NearMiss(f"a term added to the reshaped scores before {where} broadcasts them to a larger shape")
            bias.reshape = (expand_to, reshape_to, self.outer.attributes.get_int("allowzero", 0))  # type: ignore[assignment]
            bias.split_first = inside is not None and len(inside) == len(want) + 1 and all(
                isinstance(v, int) and v == w for v, w in zip(inside[2:], want[1:]))


def _per_query_factor(node: ir.Node, r: int) -> ir.Value | None:
    """The other operand of ``node`` (a Mul of the scores) if it is constant along the keys: a known
    shape of rank <= ``r`` whose last dim is 1 (Swin V2's per-head ``exp(logit_scale)``, ``[H, 1, 1]``)."""
    if not is_op(node, "Mul"):
        return None
    a, b = node.inputs
    if not _reaches_matmul(a):
        a, b = b, a
    shape = dims(b)
    if not _reaches_matmul(a) or b is None or shape is None or not shape or len(shape) > r or shape[-1] != 1:
        return None
    return b if b.dtype is not None and b.dtype.is_floating_point() else None


def _masked_fill(node: ir.Node, r: int) -> tuple[ir.Value, ir.Value, bool]:
    """``Where(c, -inf, S)`` (``S.masked_fill(c, -inf)``) or ``Where(c, S, -inf)``: ``(c, S, whether
    True masks)``. Exact as ``S + Where(c, -inf, 0)`` for finite ``S``; a finite fill value is not
    (a fully masked row would weigh its keys equally, and ``S + fill`` does not)."""
    cond, a, b = node.inputs
    for fill, scores, masks_when_true in ((a, b, True), (b, a, False)):
        value = scalar_constant(fill)
        if value is None or scores is None or not _reaches_matmul(scores):
            continue
        if value != -np.inf:
            raise NearMiss(f"the scores are filled with {value:g} by Where {node.name!r}: only -inf is exact as an additive mask")
        shape, scores_shape = dims(cond), dims(scores)
        if shape is None or scores_shape is None or len(shape) > r:
            raise NearMiss(f"the mask of Where {node.name!r} has an unknown or larger rank than the scores")
        for d, s in zip(shape[::-1], scores_shape[::-1]):
            if isinstance(d, int) and d != 1 and isinstance(s, int) and d != s:
                raise NearMiss(f"the mask of Where {node.name!r} broadcasts the scores to a larger shape")
        return cond, scores, masks_when_true  # type: ignore[return-value]
    raise NearMiss(f"the scores are masked by Where {node.name!r} (not with -inf, nor an additive mask)")


def _scatter_under_transposes(node: ir.Node | None) -> ir.Node | None:
    """A ScatterND/ScatterElements at ``node`` or under Transposes of it (how the dynamo exporter writes
    ``slice_scatter``), else None."""
    for _ in range(_MAX_STEPS):
        if is_op(node, "ScatterND", "ScatterElements"):
            return node
        if not is_op(node, "Transpose"):
            return None
        node = producer(node.inputs[0])  # type: ignore[union-attr]
    return None


def _why_not_scale(node: ir.Node) -> str:
    others = [v for v in node.inputs if v is not None and not _reaches_matmul(v)]
    other = others[0] if others else node.inputs[1]
    shape = other.shape if other is not None else None
    scalar = shape is not None and all(isinstance(d, int) and d == 1 for d in shape)
    where = f"{other.name!r}" if other is not None else "?"
    if scalar or shape is None:
        return f"the scores are scaled by {where}, which is not a constant (a graph input or computed at run time)"
    return f"the scores are multiplied by {where} (a multiplicative mask, not an additive bias)"


def parse_scores(softmax: ir.Node) -> Scores:
    x = softmax.inputs[0]
    r = rank(x)
    if r is None:
        raise NearMiss("the softmax input has unknown rank")
    axis = softmax.attributes.get_int("axis", -1)
    if axis % r != r - 1:
        raise NearMiss(f"softmax over axis {axis} of a rank-{r} tensor, not the last axis")
    scale, post_scale = 1.0, 1.0
    biases: list[Bias] = []
    sites: list[str] = []
    region: _Region | None = None
    chain: set[ir.Node] = set()
    targets: list[ir.Value] = []
    row_factor: ir.Value | None = None
    value = x
    for _ in range(_MAX_STEPS):
        node = producer(value)
        if node is not None:
            chain.add(node)
        if is_op(node, "MatMul"):
            if region is not None:
                raise NearMiss(f"the scores are reshaped by Reshape {region.outer.name!r} and not reshaped back")
            break
        if is_op(node, "Reshape"):
            if region is None:
                region = _Region(node, len(biases))  # type: ignore[arg-type]
            else:
                region.close(node, biases)  # type: ignore[arg-type]
                targets += [node.inputs[1], region.outer.inputs[1]]  # type: ignore[union-attr, list-item]
                region = None
            value = node.inputs[0]  # type: ignore[union-attr]
            continue
        if is_op(node, "Mul", "Div"):
            found = _scalar_factor(node)  # type: ignore[arg-type]
            if found is None:
                factor = _per_query_factor(node, r)  # type: ignore[arg-type]
                if factor is None or row_factor is not None or region is not None:
                    raise NearMiss(_why_not_scale(node))  # type: ignore[arg-type]
                row_factor = factor
                value = node.inputs[1] if node.inputs[0] is factor else node.inputs[0]  # type: ignore[union-attr]
                continue
            f, value = found
            scale *= f
            post_scale *= f
            sites.append("scores")
            continue
        if is_op(node, "Add"):
            a, b = node.inputs  # type: ignore[union-attr]
            if not _reaches_matmul(a) and _reaches_matmul(b):
                a, b = b, a
            if not _reaches_matmul(a):
                raise NearMiss("the softmax input is a sum with no Q·Kᵀ MatMul above it")
            if row_factor is not None:
                raise NearMiss("a term is added to the scores before a factor per query multiplies them")
            biases.append(Bias(b, post_scale))  # type: ignore[arg-type]
            value = a
            continue
        scatter = _scatter_under_transposes(node)
        if scatter is not None:
            raise NearMiss(f"the scores are partly overwritten by {scatter.op_type} {scatter.name!r} (an in-place update of a slice, "
                           "such as attn[:, :, 1:, 1:] += rel), not an additive bias")
        what = "a graph input" if node is None else f"{node.op_type} {node.name!r}"
        if is_op(node, "Where"):
            cond, scores_in, masks_when_true = _masked_fill(node, r)  # type: ignore[arg-type]
            if row_factor is not None:
                raise NearMiss("a mask is applied to the scores before a factor per query multiplies them")
            if post_scale <= 0:
                raise NearMiss("a mask of -inf is applied to the scores before a negative scale")
            biases.append(Bias(cond, mask=masks_when_true))
            value = scores_in
            continue
        raise NearMiss(f"the softmax input comes from {what}, not from a Q·Kᵀ MatMul")
    else:
        raise NearMiss("too many steps between the softmax and a MatMul")
    matmul = node
    if any(_depends_on(t, chain) for t in targets):
        raise NearMiss("the scores are reshaped to a shape computed from the scores themselves")
    if row_factor is not None and _depends_on(row_factor, chain):
        raise NearMiss("the scores are multiplied by a factor computed from the scores themselves")
    if rank(matmul.inputs[0]) != r or rank(matmul.inputs[1]) != r:  # type: ignore[union-attr]
        raise NearMiss("Q and Kᵀ have a different rank from the scores (broadcast MatMul)")
    if r not in (2, 3, 4, 5):
        raise NearMiss(f"rank-{r} attention (the op takes [B, H, N, d])")
    if r == 5:
        _check_rank5_biases(biases)
    q, q_factor = _peel_scalars(matmul.inputs[0])  # type: ignore[union-attr, arg-type]
    kt, kt_perm, k_factor = peel_transposes(matmul.inputs[1], scalars=True)  # type: ignore[union-attr, arg-type]
    if q_factor != 1.0:
        sites.insert(0, "q")
    if k_factor != 1.0:
        sites.insert(1 if q_factor != 1.0 else 0, "k")
    k_perm = compose(swap_last(r), kt_perm)
    for bias in biases:
        if r < 4 and (rank(bias.value) is None or rank(bias.value) > r):  # type: ignore[operator]
            raise NearMiss("an additive bias of unknown rank or higher rank than the scores")
    return Scores(
        softmax=softmax,
        matmul=matmul,  # type: ignore[arg-type]
        q=Operand(q),
        k=Operand(kt, None if k_perm == list(range(r)) else k_perm),
        rank=r,
        scale=scale * q_factor * k_factor,
        bias=biases,
        scale_sites=sites,
        q_factor=row_factor,
    )


def _check_rank5_biases(biases: list[Bias]) -> None:
    """Rank-5 scores ``[B, G, H, Nq, Nk]`` run as ``[B·G, H, Nq, Nk]``: a term may vary over the
    last three axes only (MaxViT's relative position bias ``[1, H, N, N]``), so it broadcasts the same."""
    for bias in biases:
        shape = dims(bias.value)
        if bias.reshape is not None or shape is None:
            raise NearMiss("a term added to rank-5 scores has an unknown shape or is added to another view of them")
        lead = ([1] * 5 + list(shape))[-5:-3]
        if any(d != 1 for d in lead):
            raise NearMiss("a term added to rank-5 scores varies over their two leading axes")


def describe(scores: Scores) -> str:
    """``scale on q, k; bias`` style detail for the summary."""
    parts = [f"scale on {', '.join(dict.fromkeys(scores.scale_sites))}" if scores.scale_sites else "no scale"]
    if scores.q_factor is not None:
        parts.append("a factor per query, on Q")
    terms = [b for b in scores.bias if b.mask is None]
    if terms:
        parts.append("additive bias" if len(terms) == 1 else f"{len(terms)} additive biases")
    if len(terms) < len(scores.bias):
        parts.append("-inf mask")
    return "; ".join(parts)


def _is_nan_guard(p: ir.Value) -> ir.Value | None:
    """``Where(IsNaN(P), 0, P)`` (torch.onnx's guard for fully masked rows): its output, else None."""
    users = p.consumers()
    isnan = [n for n in users if is_op(n, "IsNaN")]
    where = [n for n in users if is_op(n, "Where")]
    if len(users) != 2 or len(isnan) != 1 or len(where) != 1:
        return None
    w = where[0]
    if w.inputs[0] is not isnan[0].outputs[0] or w.inputs[2] is not p or scalar_constant(w.inputs[1]) != 0.0:
        return None
    return w.outputs[0]


def weights_consumer(scores: Scores) -> tuple[ir.Node, ir.Value, bool]:
    """The one node that reads the attention weights P, the value it reads, and whether a NaN
    guard sits between (see ``Attention.nan_to_zero``)."""
    p = scores.softmax.outputs[0]
    nan_to_zero = False
    guarded = _is_nan_guard(p)
    if guarded is not None:
        p, nan_to_zero = guarded, True
    if p.is_graph_output():
        raise NearMiss("the attention weights are a graph output (e.g. need_weights=True), so the N×N map must exist")
    users = p.consumers()
    if len(users) != 1:
        raise NearMiss(f"the attention weights have {len(users)} consumers (used beyond P·V, e.g. need_weights=True)")
    return users[0], p, nan_to_zero
