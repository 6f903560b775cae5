"""Decomposed attention with the weights on the left: ``softmax(scale * Q @ K^T + bias) @ V``.

Matches what both torch.onnx exporters emit at opsets 17-22 for ``F.scaled_dot_product_attention``
and ``nn.MultiheadAttention`` (scale as ``sqrt(scale)`` on Q and on K^T, or once on the scores;
additive float masks, boolean masks turned into ``Where(mask, 0, -inf)`` plus the NaN guard, causal
masks; 4-D multi-head or 3-D ``[B*H, N, d]``), hand-written ``softmax(q @ k.transpose(-2, -1) * s) @ v``,
and SAGAN's ``bmm(A, V^T)`` layout. Exact: the score side is parsed by ``scores.parse_scores``,
whose steps are identities of the contract's formula, and the product with V is the contract's
``P @ V`` on the same operand. Rank 2/3 graphs get unit axes so the node sees ``[B, H, N, d]``.
"""

from __future__ import annotations

import onnx_ir as ir

from attn_deploy.fuse.graph import is_op, rank
from attn_deploy.fuse.match import Attention, NearMiss, Operand
from attn_deploy.fuse.scores import describe, parse_scores, weights_consumer


def match(softmax: ir.Node) -> Attention | None:
    scores = parse_scores(softmax)
    user, p, nan_to_zero = weights_consumer(scores)
    if not is_op(user, "MatMul") or user.inputs[0] is not p:
        if is_op(user, "Transpose"):
            raise NearMiss(f"the attention weights go to Transpose {user.name!r}, which is not SAGAN's V @ Aᵀ")
        raise NearMiss(f"the attention weights go to {user.op_type} {user.name!r}, not to a MatMul with V (a multiplicative mask?)")
    v = user.inputs[1]
    if rank(v) != scores.rank:
        raise NearMiss("V has a different rank from the attention weights")
    label = "sdpa" if scores.rank == 4 else f"attention rank-{scores.rank}"
    return scores.attention(pattern=f"{label} (P·V; {describe(scores)})", product=user, v=Operand(v), nan_to_zero=nan_to_zero)  # type: ignore[arg-type]
