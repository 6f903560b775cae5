"""A small model with three kinds of attention, for ``check --per-attention``: a SAGAN block that calls
the op (routed), a hand-written token attention (fused from the exported graph) and an SDPA block
(routed by ``export/routing.py``). ``broken`` and ``overflowing`` change one attention only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn_deploy.zoo import SelfAttention

SHAPE = (1, 3, 16, 16)


class HandAttention(nn.Module):
    """softmax(q kᵀ / √d) v written out: no op call, the fuse pass finds it in the exported graph."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = dim**-0.5

    def forward(self, x: Tensor) -> Tensor:
        scores = torch.matmul(self.q(x), self.k(x).transpose(-1, -2)) * self.scale
        return x + torch.matmul(torch.softmax(scores, dim=-1), self.v(x))


class SdpaAttention(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape

        def split(t: Tensor) -> Tensor:
            return t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return x + out.transpose(1, 2).reshape(b, n, c)


class ThreeAttentions(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.sagan = SelfAttention(dim)
        self.blocks = nn.Sequential(HandAttention(dim), SdpaAttention(dim))
        self.head = nn.Linear(dim, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.sagan(self.stem(x))
        tokens = y.flatten(2).transpose(1, 2)
        out: Tensor = self.head(self.blocks(tokens))
        return out


def faithful() -> ThreeAttentions:
    torch.manual_seed(0)
    model = ThreeAttentions().eval()
    with torch.no_grad():
        model.sagan.gamma.fill_(0.7)  # a fresh SAGAN block is the identity
    return model


def broken() -> ThreeAttentions:
    """``faithful`` with the SDPA block's query projection perturbed."""
    model = faithful()
    with torch.no_grad():
        model.blocks[1].q.weight.mul_(1.5)
    return model


def overflowing() -> ThreeAttentions:
    """``faithful`` whose hand-written attention's queries exceed float16's range (65504)."""
    model = faithful()
    with torch.no_grad():
        model.blocks[0].q.weight.mul_(3e5)
    return model
