"""SAGAN's ``bmm(V, A^T)`` layout: ``out [B, C, N] = V [B, C, N] @ softmax(Q^T K)^T``.

The seed's self-attention computes ``energy = bmm(q^T, k)`` from 1x1-conv projections reshaped
to ``[B, C', N]``, ``A = softmax(energy, -1)``, then ``bmm(V, A^T)``, optionally with a temperature
(Mul/Div) on the energy. Since ``V @ A^T = (A @ V^T)^T``, the result is the contract's output
with V taken as ``V^T`` and transposed back: exact. (SAGAN's other layout, ``bmm(A, V^T)``, is
plain ``P @ V`` and is matched by ``sdpa``.)
"""

from __future__ import annotations

import onnx_ir as ir

from attn_deploy.fuse.graph import is_op, rank, swap_last
from attn_deploy.fuse.match import Attention, NearMiss, Operand
from attn_deploy.fuse.scores import (
    describe,
    parse_scores,
    peel_transposes,
    weights_consumer,
)


def match(softmax: ir.Node) -> Attention | None:
    scores = parse_scores(softmax)
    user, _, nan_to_zero = weights_consumer(scores)
    if not is_op(user, "Transpose") or list(user.attributes.get_ints("perm", [])) != swap_last(scores.rank):
        return None
    pt = user.outputs[0]
    users = pt.consumers()
    if len(users) != 1 or not is_op(users[0], "MatMul") or users[0].inputs[1] is not pt or pt.is_graph_output():
        raise NearMiss("the transposed attention weights are not consumed by one MatMul V @ Aᵀ")
    product = users[0]
    v_t = product.inputs[0]
    if rank(v_t) != scores.rank:
        raise NearMiss("V has a different rank from the attention weights")
    source, perm, _ = peel_transposes(v_t)  # type: ignore[arg-type]
    v_perm = [perm[i] for i in swap_last(scores.rank)]  # V = Transpose(V^T, swap) folded into the peeled ones
    v = Operand(source, None if v_perm == list(range(scores.rank)) else v_perm)
    return scores.attention(pattern=f"sagan (V·Aᵀ; {describe(scores)})", product=product, v=v, transpose_output=True, nan_to_zero=nan_to_zero)
