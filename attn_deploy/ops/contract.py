"""Names and defaults of the FusedAttention contract (DESIGN.md §2).

Inputs ``Q [B,H,Nq,dk]``, ``K [B,H,Nk,dk]``, ``V [B,H,Nk,dv]``, optional additive ``bias``
broadcastable to ``[B,H,Nq,Nk]``; output ``O [B,H,Nq,dv] = softmax(scale*Q@K^T + bias) @ V``,
softmax and accumulation in float32 whatever the input dtype.
"""

from __future__ import annotations

DOMAIN = "attn_deploy"
OP_TYPE = "FusedAttention"
#: Domain of the nodes ``lower --target ort`` writes; each op type names one implementation.
LOWERED_DOMAIN = "attn_deploy.ort"
OPSET_VERSION = 1
PLUGIN_NAMESPACE = "attn_deploy"
PLUGIN_VERSION = "1"


def node_attributes(scale: float) -> dict[str, float | str]:
    """A FusedAttention node's attributes: ``scale``, and what TensorRT's parser matches plugins by."""
    return {"scale": float(scale), "plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}

#: Largest score block (elements of float32) the ONNX body materialises at once (the eager kernel
#: uses ``EAGER_TILE_ELEMENTS`` below).
#: 8 Mi elements = 32 MiB: big enough that matrix products stay efficient, small enough that a
#: stride-4 FPN level (N ~ 66,800) runs in a few hundred MB. Measured at N=16,800 in ONNX Runtime
#: (benchmarks/memory_sagan.py): 64 MiB blocks peaked at 451 MB for the process, 32 MiB at 270 MB,
#: in the same time; ORT's arena roughly doubles what a block needs.
DEFAULT_SCORE_BLOCK_ELEMENTS = 1 << 23
#: The eager kernel's score tile (elements of float32): 4 Mi = 16 MiB, one at a time. Small enough to
#: stay in the last-level cache between Q·Kᵀ, softmax and P·V, which is where the kernel's speed
#: comes from (at N=16,800 on this project's 2-core CPU: 64 MiB blocks 0.60 s, 16 MiB tiles 0.46 s).
EAGER_TILE_ELEMENTS = 1 << 22
#: Rows per eager tile at most: taller tiles leave the cache without making the products faster.
EAGER_MAX_TILE_ROWS = 256
#: Per-head score matrices smaller than this (Nq·Nk) go through one batched matmul instead: packing
#: K and V per head costs more than it saves there (8 heads of 196 tokens: 0.8 ms batched, 2.1 ms
#: tiled; one head of 1,050: equal).
EAGER_TILED_MIN_SCORES = 1 << 20


def block_rows(batch_heads: int, nk: int, budget_elements: int = DEFAULT_SCORE_BLOCK_ELEMENTS) -> int:
    """Query rows per block so that a ``[batch_heads, rows, nk]`` score block fits the budget.

    Rounded down to a multiple of 64 when at least 64 (friendlier to matrix kernels). The ONNX body
    computes the same formula in-graph, so both sides block identically.
    """
    rows = max(1, budget_elements // max(1, batch_heads * nk))
    if rows >= 64:
        rows = rows // 64 * 64
    return rows


def balanced_rows(nq: int, max_rows: int) -> int:
    """Rows per block when ``nq`` queries are cut into the fewest blocks of at most ``max_rows``, evenly.

    Even blocks waste fewer than one row per block on padding: with ``max_rows`` alone, Nq=4,200 and
    1,984-row blocks would compute 5,952 rows (42% waste); balanced, 3 blocks of 1,400.
    """
    nq = max(nq, 1)
    n_blocks = -(-nq // max(max_rows, 1))
    return -(-nq // n_blocks)
