"""Route ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` through the fused op.

Inside ``attention_routed_through_op()`` models that never heard of attn-deploy export with one
FusedAttention node per attention call, without editing them:

* ``torch.nn.functional.scaled_dot_product_attention`` is replaced for the duration, so code that
  calls it as ``F.scaled_dot_product_attention`` (and ``F.multi_head_attention_forward``) uses the op.
  Code that imported the function by name before the patch is not affected.
* ``nn.MultiheadAttention`` modules are called with ``need_weights=False`` (with weights it
  materialises the map itself) and with the native fast path off. Their second output is ``None``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn_deploy.ops.torch_op import fused_attention, plain_attention

_original_sdpa = F.scaled_dot_product_attention


def _mask_to_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def sdpa_via_op(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """Drop-in for ``F.scaled_dot_product_attention`` that calls the fused op where it can."""
    if dropout_p > 0.0 or enable_gqa or query.dim() not in (3, 4):
        return _original_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    squeeze = query.dim() == 3
    if squeeze:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    bias = None if attn_mask is None else _mask_to_bias(attn_mask, query.dtype)
    if is_causal:
        nq, nk = query.shape[-2], key.shape[-2]
        causal = torch.ones(nq, nk, dtype=torch.bool, device=query.device).tril()
        causal_bias = _mask_to_bias(causal, query.dtype)
        bias = causal_bias if bias is None else bias + causal_bias
    if bias is not None and bias.dim() == 3 and squeeze:
        bias = bias.unsqueeze(1)
    softmax_scale = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    out: torch.Tensor = fused_attention(query, key, value, bias, scale=float(softmax_scale))
    return out.squeeze(1) if squeeze else out


def _without_weights(forward: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        kwargs["need_weights"] = False
        return forward(*args, **kwargs)

    return call


@contextlib.contextmanager
def attention_routed_through_op(model: nn.Module) -> Iterator[nn.Module]:
    """Patch SDPA and every ``nn.MultiheadAttention`` in ``model``; undo it all on exit."""
    patched = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    F.scaled_dot_product_attention = sdpa_via_op
    torch.backends.mha.set_fastpath_enabled(False)
    for m in patched:
        m.forward = _without_weights(m.forward)  # type: ignore[method-assign]
    try:
        yield model
    finally:
        for m in patched:
            del m.forward
        torch.backends.mha.set_fastpath_enabled(fastpath)
        F.scaled_dot_product_attention = _original_sdpa


@contextlib.contextmanager
def attention_left_plain(model: nn.Module) -> Iterator[nn.Module]:
    """``export --no-fuse``: zoo blocks compute the plain formula, SDPA and MHA are left to torch.

    Only MHA's native fast path is turned off: it is one fused aten op neither exporter can emit.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with plain_attention():
            yield model
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
