"""``torch.ops.attn_deploy.fused_attention``: the op in PyTorch.

A ``torch.library.custom_op`` with a fake kernel, so eager runs, ``torch.export`` sees one node,
and both ONNX exporters emit one ``attn_deploy::FusedAttention`` node (see ``symbolic.py``).
The eager kernel works on tiles of query rows and never holds more than ``EAGER_TILE_ELEMENTS``
scores at a time.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any, cast

import torch
from torch import Tensor

from attn_deploy.ops.contract import (
    EAGER_MAX_TILE_ROWS,
    EAGER_TILE_ELEMENTS,
    EAGER_TILED_MIN_SCORES,
    balanced_rows,
    block_rows,
)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, *, scale: float) -> Tensor:
    """The contract written plainly (materialises the full score matrix): the test oracle."""
    acc = _accumulation_dtype(q)
    scores = torch.matmul(q.to(acc) * scale, k.to(acc).transpose(-1, -2))
    if bias is not None:
        scores = scores + bias.to(acc)
    return torch.matmul(scores.softmax(dim=-1), v.to(acc)).to(q.dtype)


def _accumulation_dtype(q: Tensor) -> torch.dtype:
    """float32 for half types (the contract), float64 stays float64 (gradcheck)."""
    return torch.promote_types(q.dtype, torch.float32)


def _onednn_linear_available() -> bool:
    """Whether PyTorch's oneDNN linear ops (the ones Inductor uses on CPU) can be called here."""
    return bool(torch.backends.mkldnn.enabled) and _onednn_linear_works()


@functools.cache
def _onednn_linear_works() -> bool:
    """These ops are internal to PyTorch: check once that they exist and compute ``x @ wᵀ``."""
    available: bool = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    if not (available and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        # Fixed values on purpose: no draw from the global RNG, independent of the default dtype.
        x = torch.arange(15, dtype=torch.float32).view(3, 5) / 7
        w = torch.arange(20, dtype=torch.float32).view(4, 5).cos()
        return torch.allclose(_linear(x, _pack(w, 3)), x @ w.t(), rtol=1e-4, atol=1e-5)
    except (RuntimeError, TypeError):  # a changed signature or an unsupported CPU
        return False


def _pack(weight: Tensor, rows: int) -> Tensor:
    """``weight [out, in]`` re-laid-out once for oneDNN, for inputs of about ``rows`` rows."""
    return cast(Tensor, torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows))


def _linear(x: Tensor, packed: Tensor) -> Tensor:
    """``x @ weightᵀ`` for a weight packed by ``_pack``: a new ``[rows, out]`` tensor."""
    return cast(Tensor, torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""))


def _tile_rows(nq: int, nk: int, budget_elements: int) -> int:
    """Rows per eager tile: within the budget and ``EAGER_MAX_TILE_ROWS``, cut evenly."""
    return balanced_rows(nq, min(EAGER_MAX_TILE_ROWS, max(1, budget_elements // max(1, nk))))


def _tiled_onednn(q: Tensor, k: Tensor, v: Tensor, bias4: Tensor | None, scale: float,
                  out: Tensor, budget_elements: int) -> None:
    """The fast path: float32 CPU tensors of one batch shape, one head and one query tile at a time.

    Why oneDNN and tiles: PyTorch's float32 ``matmul`` calls MKL, whose sgemm takes a generic code
    path on non-Intel x86 CPUs (about 200 GFLOP/s on this project's AMD EPYC, where oneDNN reaches
    450 with K and V packed once per head). A tile of scores small enough to stay in the cache is
    then computed, softmaxed in place and multiplied by V before it is evicted.
    """
    batch, heads, nq, _ = q.shape
    nk = k.shape[-2]
    rows = _tile_rows(nq, nk, budget_elements)
    bias_bh = None if bias4 is None else bias4.expand(batch, heads, -1, nk)
    _let_malloc_reuse(rows * nk)
    with torch.no_grad():  # the custom op has its own backward; out= kernels refuse autograd
        for b in range(batch):
            for h in range(heads):
                k_packed = _pack(k[b, h].float(), rows)  # scores = Q Kᵀ: K is the linear's weight
                vt_packed = _pack(v[b, h].float().t(), rows)  # out = P V: Vᵀ is
                q_scaled = q[b, h].float() * scale
                bias = None if bias_bh is None else bias_bh[b, h]
                for start in range(0, nq, rows):
                    end = min(start + rows, nq)
                    scores = _linear(q_scaled[start:end], k_packed)
                    if bias is not None:
                        scores += bias if bias.shape[0] == 1 else bias[start:end]
                    torch.ops.aten._softmax.out(scores, -1, False, out=scores)  # in place: each row read, then written
                    out[b, h, start:end] = _linear(scores, vt_packed)


def _let_malloc_reuse(elements: int) -> None:
    """Make glibc serve score tiles of ``elements`` floats from its heap instead of fresh mappings.

    Why: oneDNN's linear returns a new tensor per tile. glibc maps a chunk this large with mmap and,
    on free, raises its mmap threshold to exactly that chunk's size, so the next tile of the same
    size is mapped again and page-faults all over (measured at N=66,800: Q·Kᵀ 1.2 s or 4.9 s, by
    process). Freeing one slightly larger chunk first lifts the threshold above every tile (glibc
    does this up to 32 MiB; tiles are at most ``EAGER_TILE_ELEMENTS`` floats = 16 MiB by default,
    unless one row of scores is longer). Harmless with other allocators.
    """
    torch.empty(elements + (1 << 16), dtype=torch.float32)


def _blocked_generic(q: Tensor, k: Tensor, v: Tensor, bias4: Tensor | None, scale: float,
                     out: Tensor, budget_elements: int) -> None:
    """Any dtype, device and broadcast: ``torch.matmul`` over blocks of query rows."""
    *batch, nq, _ = q.shape
    nk = k.shape[-2]
    batch_heads = 1
    for d in batch:
        batch_heads *= d
    rows = balanced_rows(nq, block_rows(batch_heads, nk, budget_elements))
    acc = _accumulation_dtype(q)
    kt = k.to(acc).transpose(-1, -2)
    vf = v.to(acc)
    for start in range(0, nq, rows):
        end = min(start + rows, nq)
        scores = torch.matmul(q[..., start:end, :].to(acc) * scale, kt)
        if bias4 is not None:
            scores += bias4 if bias4.shape[-2] == 1 else bias4[..., start:end, :]
        out[..., start:end, :] = torch.matmul(scores.softmax(dim=-1), vf).to(out.dtype)


def blocked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None = None,
    *,
    scale: float,
    budget_elements: int = EAGER_TILE_ELEMENTS,
) -> Tensor:
    """Memory-bounded attention, float32 inside: at most ``budget_elements`` scores exist at a time
    (on the fast path; the generic path also holds their softmax).

    The fast path (float32, float16 or bfloat16 on a CPU with oneDNN, q, k and v of one batch shape, a large score
    matrix per head) tiles per head; everything else (small heads, float64 for gradcheck, other
    devices, broadcast batches) blocks with matmul.
    """
    nq, nk, dv = q.shape[-2], k.shape[-2], v.shape[-1]
    out = torch.empty((*q.shape[:-1], dv), dtype=q.dtype, device=q.device)
    if nq == 0:
        return out
    acc = _accumulation_dtype(q)
    bias4 = None if bias is None else bias.to(acc).reshape((1,) * (4 - bias.dim()) + tuple(bias.shape))
    fast = (
        acc == torch.float32
        and q.device.type == "cpu"
        and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]
        and q.dim() <= 4
        and nq * nk >= EAGER_TILED_MIN_SCORES
        and q.shape[-1] > 0
        and dv > 0
        and _onednn_linear_available()
    )
    if not fast:
        _blocked_generic(q, k, v, bias4, scale, out, budget_elements)
        return out

    def as4(t: Tensor) -> Tensor:
        return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))

    _tiled_onednn(as4(q), as4(k), as4(v), bias4, scale, as4(out), budget_elements)
    return out


@torch.library.custom_op("attn_deploy::fused_attention", mutates_args=())
def fused_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, *, scale: float) -> Tensor:
    """softmax(scale * q @ k^T + bias) @ v for ``q [B,H,Nq,dk]``, ``k [B,H,Nk,dk]``, ``v [B,H,Nk,dv]``."""
    return blocked_attention(q, k, v, bias, scale=scale)


@fused_attention.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, *, scale: float) -> Tensor:
    torch._check(q.shape[-1] == k.shape[-1], lambda: "q and k must share dk")
    torch._check(k.shape[-2] == v.shape[-2], lambda: "k and v must share Nk")
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


@fused_attention.register_kernel("cuda")
def _(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, *, scale: float) -> Tensor:
    """On CUDA the op runs the Triton kernel the TensorRT plugin is compiled from (float64 keeps the tiled path)."""
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not (q.dtype == k.dtype == v.dtype):
        return blocked_attention(q, k, v, bias, scale=scale)
    from attn_deploy.ops.triton_kernel import triton_attention

    precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return triton_attention(q, k, v, None if bias is None else bias.to(q.dtype), scale=scale, fp32_precision=precision)


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    # Training is not the hot path: recompute with the plain formula and let autograd differentiate it.
    q, k, v, bias = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(t is not None and t.is_floating_point()) if t is not None else None
                  for t in (q, k, v, bias)]
        out = reference_attention(*leaves, scale=ctx.scale)  # type: ignore[arg-type]
        wanted = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(out, wanted, grad, allow_unused=True)
    it = iter(grads)
    return tuple(next(it) if t is not None else None for t in leaves)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], keyword_only_inputs: dict[str, Any], output: Tensor) -> None:
    q, k, v, bias = inputs
    ctx.save_for_backward(q, k, v, bias)
    ctx.scale = keyword_only_inputs["scale"]


fused_attention.register_autograd(_backward, setup_context=_setup_context)


_plain = threading.local()


@contextlib.contextmanager
def plain_attention() -> Iterator[None]:
    """Inside, blocks that check ``plain_attention_enabled()`` compute the materialising formula
    instead of calling the op: how ``export --no-fuse`` produces a plain MatMul/Softmax/MatMul graph."""
    previous = getattr(_plain, "enabled", False)
    _plain.enabled = True
    try:
        yield
    finally:
        _plain.enabled = previous


def plain_attention_enabled() -> bool:
    return bool(getattr(_plain, "enabled", False))
