"""``torch.ops.attn_deploy.fused_attention``: the op in PyTorch.

A ``torch.library.custom_op`` with a fake kernel, so eager runs, ``torch.export`` sees one node,
and both ONNX exporters emit one ``attn_deploy::FusedAttention`` node (see ``symbolic.py``).
The eager kernel processes query blocks and never holds a score block larger than
``EAGER_SCORE_BLOCK_ELEMENTS`` (two of them: scores and probabilities).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from attn_deploy.ops.contract import EAGER_SCORE_BLOCK_ELEMENTS, balanced_rows, block_rows


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


def _conv_pv(vf: Tensor) -> Callable[[Tensor, Tensor, int], None] | None:
    """``probs @ V`` as 1×1 convolutions, or None where that does not apply (then ``torch.matmul``).

    Why: PyTorch's float32 matmul calls MKL's sgemm, which takes a slow code path on non-Intel x86
    CPUs (measured on this project's AMD EPYC: 80 GFLOP/s), while convolutions go to oneDNN, which
    dispatches on the instruction set (200-400 GFLOP/s for the same product). With channels-last
    strides a ``[rows, Nk]`` probability block is the conv input ``[1, Nk, rows, 1]`` as it lies
    in memory, ``Vᵀ`` is the weight, and the output ``[rows, dv]`` comes out contiguous.
    """
    if vf.dtype != torch.float32 or vf.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    nk, dv = vf.shape[-2:]
    weights = [w.t().contiguous().view(dv, nk, 1, 1) for w in vf.reshape(-1, nk, dv)]

    def pv(probs: Tensor, out: Tensor, start: int) -> None:
        flat = probs.reshape(-1, probs.shape[-2], nk)
        rows = flat.shape[1]
        for i, w in enumerate(weights):
            block = torch.nn.functional.conv2d(flat[i].view(1, rows, 1, nk).permute(0, 3, 1, 2), w)
            out[i, start:start + rows] = block.permute(0, 2, 3, 1).reshape(rows, dv)

    return pv


def blocked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None = None,
    *,
    scale: float,
    budget_elements: int = EAGER_SCORE_BLOCK_ELEMENTS,
) -> Tensor:
    """Memory-bounded attention: one query block at a time, float32 inside.

    At most one score block and its softmax (``budget_elements`` each) exist at a time.
    """
    *batch, nq, _ = q.shape
    nk, dv = k.shape[-2], v.shape[-1]
    batch_heads = 1
    for d in batch:
        batch_heads *= d
    rows = balanced_rows(nq, block_rows(batch_heads, nk, budget_elements))
    acc = _accumulation_dtype(q)
    kt = k.to(acc).transpose(-1, -2)
    vf = v.to(acc)
    same_batch = q.shape[:-2] == k.shape[:-2] == v.shape[:-2]
    pv = _conv_pv(vf) if same_batch else None
    out = torch.empty((*batch, nq, dv), dtype=q.dtype, device=q.device)
    out_flat = out.view(-1, nq, dv)
    bias4 = None if bias is None else bias.to(acc).reshape((1,) * (4 - bias.dim()) + tuple(bias.shape))
    # Two block buffers reused across blocks: a fresh 30 MB tensor per block costs page faults
    # (the allocator returns such blocks to the OS), measured 25% of Q·Kᵀ's time at N=16,800.
    block_elems = batch_heads * min(rows, nq) * nk
    scores_buf = torch.empty(block_elems, dtype=acc, device=q.device)
    probs_buf = torch.empty(block_elems, dtype=acc, device=q.device)
    for start in range(0, nq, rows):
        end = min(start + rows, nq)
        shape = (*batch, end - start, nk)
        scores = scores_buf[: batch_heads * (end - start) * nk].view(shape)
        torch.matmul(q[..., start:end, :].to(acc) * scale, kt, out=scores)
        if bias4 is not None:
            scores += bias4 if bias4.shape[-2] == 1 else bias4[..., start:end, :]
        probs = probs_buf[: scores.numel()].view(shape)
        torch.ops.aten._softmax.out(scores, -1, False, out=probs)  # one fused pass
        if pv is not None:
            pv(probs, out_flat, start)
        else:
            out[..., start:end, :] = torch.matmul(probs, vf).to(q.dtype)
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


def _backward(ctx, grad: Tensor):  # noqa: ANN001, ANN202 - torch.library's signature
    # Training is not the hot path: recompute with the plain formula and let autograd differentiate it.
    q, k, v, bias = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(t is not None and t.is_floating_point()) if t is not None else None
                  for t in (q, k, v, bias)]
        out = reference_attention(*leaves, scale=ctx.scale)
        wanted = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(out, wanted, grad, allow_unused=True)
    it = iter(grads)
    return tuple(next(it) if t is not None else None for t in leaves)


def _setup_context(ctx, inputs, keyword_only_inputs, output) -> None:  # noqa: ANN001 - torch.library's signature
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
