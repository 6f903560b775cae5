"""Attention rows from PyTorch: run the model once with every attention routed through the op and
recorded (``ops/recording.py``), then compute only the rows asked for; no N×N map is ever held."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from attn_deploy.export.routing import attention_routed_through_op
from attn_deploy.ops.recording import AttentionCall, record_attention


def record_calls(module: nn.Module, inputs: Sequence[Tensor]) -> list[AttentionCall]:
    """Every attention call of one forward pass of ``module`` on ``inputs``, in graph order."""
    with torch.no_grad(), attention_routed_through_op(module), record_attention(module) as calls:
        module(*inputs)
    return calls


def output_norms(call: AttentionCall) -> np.ndarray:
    """``[B, Nq]``: each query's attention output norm, averaged over heads (where the attention responds most)."""
    norms: np.ndarray = call.output.float().norm(dim=-1).mean(dim=1).cpu().numpy()
    return norms


def torch_rows(call: AttentionCall, picks: Sequence[tuple[int, int]]) -> np.ndarray:
    """``[H, len(picks), Nk]`` float64: the softmax row of each (batch·window index, query token) pick."""
    tokens = sorted({t for _, t in picks})
    with torch.no_grad():
        probs = call.probabilities(tokens).double().cpu().numpy()  # [B, H, T, Nk]
    return np.stack([probs[b, :, tokens.index(t)] for b, t in picks], axis=1)
