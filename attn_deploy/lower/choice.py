"""Which implementation each attention node gets, per target, and why.

ONNX Runtime (``choose_ort``), measured on this project's CPU (benchmarks/attention_cpu.py):

* ``mha``: ``com.microsoft.MultiHeadAttention``. Its CPU flash kernel (MLAS) runs only for float32
  with no mask or attention bias and no past/present state; it holds a few L2-sized tiles per
  thread, so memory is O(N). Its tiles shrink as dk + dv grows (rows ≈ L2 / (16·(dk+dv))): at
  dk=256, dv=2048 (SAGAN C=2048) it was 2.3x slower than plain MatMul/Softmax/MatMul, at
  dk=32, dv=256 it was the fastest from N=4,200 up. dk != dv is supported.
* ``plain``: MatMul/Softmax/MatMul, when the whole score matrix (and its softmax) fits ``max_attn_mem``.
* ``blocked``: the query-blocked Loop body; the block is sized from ``max_attn_mem`` at run time,
  so dynamic Nq, Nk, B and H all work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from attn_deploy.artifact.sites import AttentionSite
from attn_deploy.ops.contract import balanced_rows, block_rows

Implementation = Literal["mha", "blocked", "plain", "body"]
Prefer = Literal["auto", "mha", "blocked", "plain"]
PREFERENCES: tuple[str, ...] = ("auto", "mha", "blocked", "plain")

DEFAULT_MAX_ATTN_MEM = 256 << 20
#: The flash kernel's tiles get too small beyond this (measured: 288 fast, 2,304 slow).
MHA_MAX_HEAD_SUM = 512
#: ORT's peak for the blocked body was about 6 score blocks at N=16,800 (scores, probabilities,
#: and the arena growing in doubling chunks across Loop iterations), so a block gets 1/6 of the budget.
BLOCKED_PEAK_BLOCKS = 6
#: The plain graph holds the score matrix and its softmax at once.
PLAIN_PEAK_MATRICES = 2


@dataclass(frozen=True)
class NodeChoice:
    """The implementation one FusedAttention node gets, with the reason (for the manifest and ``inspect``)."""

    node: str
    implementation: Implementation
    op_type: str  # what the node becomes, e.g. attn_deploy.ort::FusedAttentionMHA
    reason: str
    #: Query rows per block when Nq, Nk, B, H are static (blocked only); computed at run time otherwise.
    block_rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def block_elements(max_attn_mem: int) -> int:
    """Score-block budget (float32 elements) for the blocked body under ``max_attn_mem`` bytes."""
    return max(1, max_attn_mem // (4 * BLOCKED_PEAK_BLOCKS))


def static_block_rows(site: AttentionSite, max_attn_mem: int) -> int | None:
    """Rows per query block the blocked body will use, when the shapes are static."""
    b, h, nq, nk = site.B, site.H, site.Nq, site.Nk
    if not (isinstance(b, int) and isinstance(h, int) and isinstance(nq, int) and isinstance(nk, int)):
        return None
    return balanced_rows(nq, min(nq, block_rows(b * h, nk, block_elements(max_attn_mem))))


def mha_blockers(site: AttentionSite) -> list[str]:
    """Why ORT's CPU flash MultiHeadAttention would not apply (empty: it applies)."""
    reasons = []
    if site.dtype != "float32":
        reasons.append(f"dtype is {site.dtype or 'unknown'} (the CPU kernel is float32 only)")
    if site.real_bias:
        reasons.append("has a bias (the flash kernel takes no mask or attention bias)")
    if not isinstance(site.H, int):
        reasons.append("H is not static (num_heads is an attribute)")
    if site.scale == 0.0:
        reasons.append("scale is 0 (MultiHeadAttention reads 0 as 1/sqrt(dk))")
    return reasons


def mha_slow(site: AttentionSite) -> str | None:
    """Why MultiHeadAttention would run but lose to the alternatives (None: it is the fast choice)."""
    if not (isinstance(site.dk, int) and isinstance(site.dv, int)):
        return "dk or dv is not static"
    if site.dk + site.dv > MHA_MAX_HEAD_SUM:
        return f"dk + dv = {site.dk + site.dv} > {MHA_MAX_HEAD_SUM} (flash tiles too small; slower than MatMul)"
    return None


def _plain_fits(site: AttentionSite, max_attn_mem: int) -> bool:
    n = site.score_matrix_bytes
    return n is not None and PLAIN_PEAK_MATRICES * n <= max_attn_mem


def _op(name: str, site: AttentionSite) -> str:
    return f"FusedAttention{name}{'Bias' if site.real_bias else ''}"


def choose_ort(site: AttentionSite, max_attn_mem: int = DEFAULT_MAX_ATTN_MEM, prefer: Prefer = "auto") -> NodeChoice:
    """The ONNX Runtime implementation for ``site``. ``prefer`` forces one (``mha`` raises ValueError where it cannot run)."""
    blockers = mha_blockers(site)
    slow = mha_slow(site)
    mem = f"{max_attn_mem / 2**20:g} MiB"
    if prefer == "mha" or (prefer == "auto" and not blockers and slow is None):
        if blockers:
            raise ValueError(f"node {site.name}: MultiHeadAttention does not apply: {'; '.join(blockers)}")
        why = "float32, no bias, small heads: ORT's CPU flash kernel (memory O(N))" if prefer == "auto" else "forced (--impl mha)"
        return NodeChoice(site.name, "mha", _op("MHA", site), why)
    if prefer == "plain" or (prefer == "auto" and _plain_fits(site, max_attn_mem)):
        why = f"score matrix and softmax ({_mib(site.score_matrix_bytes, PLAIN_PEAK_MATRICES)}) fit {mem}"
        return NodeChoice(site.name, "plain", _op("Plain", site), why if prefer == "auto" else "forced (--impl plain)")
    if prefer == "auto":
        why = "; ".join(blockers + ([slow] if slow else [])) + f"; score matrix {'is dynamic' if site.score_matrix_bytes is None else 'exceeds ' + mem}"
    else:
        why = "forced (--impl blocked)"
    return NodeChoice(site.name, "blocked", _op("Blocked", site), why, static_block_rows(site, max_attn_mem))


def _mib(n: int | None, times: int) -> str:
    return "?" if n is None else f"{times * n / 2**20:.1f} MiB"
