"""A NumPy model of the CUDA kernel's algorithm, step for step (``fused_attention_kernel.cu``).

Same tile sizes (read from the kernel's header, not copied), same per-tile update order of the
online softmax, same handling of padding keys, of bias broadcasting through strides and of
fully masked rows. It runs on the CPU, so the tests catch algorithmic errors (a missing rescale,
an off-by-one in the last tile, a wrong broadcast stride) that a compiler cannot. What it does not
model: the order of the float32 sums inside one dot product, and the hardware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_deploy.trt_plugin.sources import DEFAULT_PLUGIN_DIR, KERNEL_HEADER

_CONSTANT = re.compile(r"^\s*constexpr\s+int\s+(k\w+)\s*=\s*(\d+)\s*;", re.MULTILINE)


@dataclass(frozen=True)
class TileConstants:
    """The kernel's compile-time tile sizes."""

    block_q: int
    block_k: int
    threads_per_row: int
    max_head_dim: int


def read_tile_constants(header: Path | None = None) -> TileConstants:
    """Parse ``constexpr int kName = N;`` lines of the kernel header (the one place they are set)."""
    text = (header or DEFAULT_PLUGIN_DIR / KERNEL_HEADER).read_text()
    found = {name: int(value) for name, value in _CONSTANT.findall(text)}
    try:
        return TileConstants(found["kBlockQ"], found["kBlockK"], found["kThreadsPerRow"], found["kMaxHeadDim"])
    except KeyError as e:
        raise ValueError(f"{header}: constant {e.args[0]} not found as `constexpr int {e.args[0]} = N;`") from None


def broadcast_strides(bias_shape: tuple[int, ...], full: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Element strides (b, h, i, j) of a contiguous bias broadcast to ``full``: ``setBroadcastBiasStrides``."""
    rank = len(bias_shape)
    if rank > 4:
        raise ValueError(f"bias rank must be 0..4, got {rank}")
    strides = [0, 0, 0, 0]
    contiguous = 1
    for a in range(3, -1, -1):
        ai = a - (4 - rank)
        if ai < 0:
            continue
        if bias_shape[ai] == full[a] and full[a] != 1:
            strides[a] = contiguous
        elif bias_shape[ai] != 1:
            raise ValueError(f"bias shape {bias_shape} does not broadcast to {full}")
        contiguous *= bias_shape[ai]
    return strides[0], strides[1], strides[2], strides[3]


def tiled_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    scale: float,
    tiles: TileConstants | None = None,
) -> np.ndarray:
    """What the kernel computes for ``q [B,H,Nq,dk]``, ``k [B,H,Nk,dk]``, ``v [B,H,Nk,dv]``, in q's dtype."""
    t = tiles or read_tile_constants()
    batch, heads, nq, dk = q.shape
    nk, dv = k.shape[2], v.shape[3]
    if not (1 <= dk <= t.max_head_dim and 1 <= dv <= t.max_head_dim):
        raise ValueError(f"dk={dk}, dv={dv}: the kernel takes head sizes 1..{t.max_head_dim}")
    f32 = np.float32
    bias_view = None
    if bias is not None:
        flat = np.ascontiguousarray(bias).reshape(-1)
        strides = broadcast_strides(tuple(bias.shape), (batch, heads, nq, nk))
        # The kernel reads bias[b*sb + h*sh + i*si + j*sj]; this view reads exactly those elements.
        bias_view = np.lib.stride_tricks.as_strided(
            flat, shape=(batch, heads, nq, nk), strides=tuple(s * flat.itemsize for s in strides), writeable=False
        )
    out = np.empty((batch, heads, nq, dv), dtype=q.dtype)
    for q0 in range(0, nq, t.block_q):
        rows = slice(q0, min(q0 + t.block_q, nq))
        qs = q[:, :, rows].astype(f32) * f32(scale)  # the kernel's Q block in shared memory
        m = np.full(qs.shape[:-1], -np.inf, dtype=f32)
        l = np.zeros(qs.shape[:-1], dtype=f32)
        acc = np.zeros((*qs.shape[:-1], dv), dtype=f32)
        for k0 in range(0, nk, t.block_k):
            valid = min(t.block_k, nk - k0)
            k_tile = np.zeros((batch, heads, t.block_k, dk), dtype=f32)  # padding keys load as 0
            k_tile[:, :, :valid] = k[:, :, k0 : k0 + valid]
            v_tile = np.zeros((batch, heads, t.block_k, dv), dtype=f32)
            v_tile[:, :, :valid] = v[:, :, k0 : k0 + valid]
            s = qs @ k_tile.swapaxes(-1, -2)
            s[..., valid:] = -np.inf
            if bias_view is not None:
                s[..., :valid] += bias_view[:, :, rows, k0 : k0 + valid].astype(f32)
            m_new = np.maximum(m, s.max(axis=-1))
            m_safe = np.where(m_new == -np.inf, f32(0), m_new)
            alpha = np.exp(m - m_safe)
            p = np.exp(s - m_safe[..., None])
            l = l * alpha + p.sum(axis=-1, dtype=f32)
            m = m_new
            acc = acc * alpha[..., None] + p @ v_tile
        with np.errstate(invalid="ignore", divide="ignore"):  # l == 0: a fully masked row gives NaN
            out[:, :, rows] = (acc / l[..., None]).astype(q.dtype)
    return out
