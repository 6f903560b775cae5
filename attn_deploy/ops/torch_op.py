"""``torch.ops.attn_deploy.fused_attention``: the op in PyTorch.

A ``torch.library.custom_op`` with a fake kernel, so eager runs, ``torch.export`` sees one node,
and both ONNX exporters emit one ``attn_deploy::FusedAttention`` node (see ``symbolic.py``).
The eager kernel processes query blocks and never holds a score block larger than
``DEFAULT_SCORE_BLOCK_ELEMENTS``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attn_deploy.ops.contract import DEFAULT_SCORE_BLOCK_ELEMENTS, balanced_rows, block_rows


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


def blocked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None = None,
    *,
    scale: float,
    budget_elements: int = DEFAULT_SCORE_BLOCK_ELEMENTS,
) -> Tensor:
    """Memory-bounded attention: one query block at a time, softmax in place, float32 inside."""
    *batch, nq, _ = q.shape
    nk, dv = k.shape[-2], v.shape[-1]
    batch_heads = 1
    for d in batch:
        batch_heads *= d
    rows = balanced_rows(nq, block_rows(batch_heads, nk, budget_elements))
    acc = _accumulation_dtype(q)
    kt = k.to(acc).transpose(-1, -2)
    vf = v.to(acc)
    out = torch.empty((*batch, nq, dv), dtype=q.dtype, device=q.device)
    bias4 = None if bias is None else bias.to(acc).reshape((1,) * (4 - bias.dim()) + tuple(bias.shape))
    for start in range(0, nq, rows):
        end = min(start + rows, nq)
        scores = torch.matmul(q[..., start:end, :].to(acc) * scale, kt)
        if bias4 is not None:
            scores += bias4 if bias4.shape[-2] == 1 else bias4[..., start:end, :]
        # Softmax in place; normalise after P@V, which touches dv columns instead of Nk.
        scores -= scores.amax(dim=-1, keepdim=True)
        scores.exp_()
        denom = scores.sum(dim=-1, keepdim=True)
        out[..., start:end, :] = (torch.matmul(scores, vf) / denom).to(q.dtype)
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
