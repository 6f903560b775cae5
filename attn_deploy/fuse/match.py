"""What a rule hands the rewriter: one attention, described in the matched graph's own layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx_ir as ir


class NearMiss(Exception):
    """Looks like attention but is not exactly the contract; the message says why (``--verbose``)."""


@dataclass
class Operand:
    """``value`` transposed by ``perm`` (None: as is) gives the operand as ``[..., N, d]``."""

    value: ir.Value
    perm: list[int] | None = None


@dataclass
class Bias:
    """An additive term of the scores, to be multiplied by ``factor`` (a scale applied after the Add).

    ``reshape``: the term was added while the scores were reshaped (Swin's per-window mask on a
    ``[B, nW, H, N, N]`` view): ``(expand_to, reshape_to, allowzero)`` make it ``Reshape(Expand(value,
    expand_to), reshape_to)``, a term of the scores' own shape. ``split_first``: that view only splits
    the scores' first dimension in two (``[B·nW, ...]`` -> ``[B, nW, ...]``), so the term can keep
    its broadcast dimensions (``rewrite._broadcast_term``).
    """

    value: ir.Value
    factor: float = 1.0
    reshape: tuple[ir.Value, ir.Value, int] | None = None
    split_first: bool = False
    #: ``value`` is a boolean condition, not a term: the term is ``-inf`` where it is True (``mask``
    #: True: ``masked_fill(c, -inf)``) or where it is False (``mask`` False), else 0.
    mask: bool | None = None


@dataclass
class Attention:
    """One matched attention: ``output == softmax(scale * Q @ K^T + sum(bias)) @ V`` in its layout.

    Layouts: ``rank`` 2, 3 or 4 tokens ``[..., N, d]`` (``heads`` None; rank < 4 gets unit axes
    inserted before the token axis, rank 5 ``[B, G, H, N, d]`` runs as ``[B·G, H, N, d]``), or
    packed heads ``[B, N, H*d]`` (``heads`` = H).
    ``q_factor``: the scores are also multiplied by this tensor, constant along the keys (last dim
    1); it multiplies Q instead, since ``(m·Q)·Kᵀ == m·(Q·Kᵀ)`` when ``m`` broadcasts over ``d``.
    ``transpose_output``: the graph computes ``O^T`` (SAGAN's ``bmm(V, A^T)``).
    ``nan_to_zero``: the graph replaces NaN weights (fully masked rows) by 0, so rows of O that
    come out NaN are zeroed too.
    """

    pattern: str
    anchor: ir.Node
    output: ir.Value
    q: Operand
    k: Operand
    v: Operand
    rank: int
    scale: float
    bias: list[Bias] = field(default_factory=list)
    bool_mask: bool = False
    heads: int | None = None
    transpose_output: bool = False
    nan_to_zero: bool = False
    q_factor: ir.Value | None = None

    @classmethod
    def of_op(
        cls, node: ir.Node, qkv: tuple[ir.Value, ir.Value, ir.Value], bias: ir.Value | None, *, pattern: str, rank: int, scale: float, **layout: Any
    ) -> Attention:
        """A whole attention op ``node`` reading Q, K, V (``qkv``, as is) and an optional additive ``bias``."""
        q, k, v = qkv
        return cls(
            pattern=pattern, anchor=node, output=node.outputs[0], q=Operand(q), k=Operand(k), v=Operand(v),
            rank=rank, scale=float(scale), bias=[Bias(bias)] if bias is not None else [], **layout,
        )
