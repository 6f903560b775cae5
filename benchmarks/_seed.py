"""The article's SelfAttention exactly as written (bmm -> softmax -> bmm): the baseline benchmarks beat.

Imported lazily by the benchmark scripts so their ONNX Runtime child processes never load torch.
"""

from __future__ import annotations

import torch
from torch import nn


class SeedSelfAttention(nn.Module):
    """Materialises the full N x N attention map; parameter names match ``attn_deploy.zoo.SelfAttention``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(c, c // 8, 1)
        self.key = nn.Conv2d(c, c // 8, 1)
        self.value = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key(x).view(b, -1, h * w)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)
        v = self.value(x).view(b, -1, h * w)
        out = torch.bmm(v, attn.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


def seed_copy_of(block: nn.Module) -> SeedSelfAttention:
    """The seed's module carrying ``block``'s weights (a zoo SelfAttention), in eval mode."""
    seed = SeedSelfAttention(block.value.in_channels)
    seed.load_state_dict(block.state_dict())
    return seed.eval()
