"""Attention rollout (Abnar & Zuidema, 2020) over a stack of attentions on the same tokens.

Each layer's map, averaged over heads, is mixed with the identity for the residual path
(0.5·A + 0.5·I), its rows renormalised, and the layers multiplied in order. This needs every row
of every map, so it is the one place a full N×N map is built, and only for N <= MAX_TOKENS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attn_deploy.errors import InputError

MAX_TOKENS = 4096


def check_size(name: str, tokens: int) -> None:
    """``InputError`` when a rollout over ``tokens`` would hold too large a map."""
    if tokens > MAX_TOKENS:
        raise InputError(f"--rollout needs full N×N maps and {name} has N={tokens} (at most {MAX_TOKENS}); drop --rollout or choose smaller attentions with --node")


def rollout(maps: Sequence[np.ndarray]) -> np.ndarray:
    """``[N, N]``: the rollout of the layers' full maps ``[H, N, N]``, first layer first."""
    n = maps[0].shape[-1]
    eye = np.eye(n)
    result = eye
    for layer in maps:
        mixed = 0.5 * layer.mean(axis=0) + 0.5 * eye
        mixed /= mixed.sum(axis=-1, keepdims=True)
        result = mixed @ result
    return result
