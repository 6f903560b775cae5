"""Small models for the zoo: an FPN feature extractor and two transformers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class TinyFPN(nn.Module):
    """Four conv stages (strides 4, 8, 16, 32) and torchvision's FPN, then ``head`` on the levels.

    Returns the levels as a tuple (``p2 .. p5, pool``) so exported outputs are plain tensors.
    """

    def __init__(self, head: nn.Module, channels: int = 128) -> None:
        super().__init__()
        widths = [32, 64, 128, 256]
        layers, c_in = [], 3
        for i, c_out in enumerate(widths):
            stride = 4 if i == 0 else 2
            layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()))
            c_in = c_out
        self.stages = nn.ModuleList(layers)
        self.fpn = FeaturePyramidNetwork(widths, channels, extra_blocks=LastLevelMaxPool())
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        features = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[str(i)] = x
        return tuple(self.head(self.fpn(features)).values())


class EncoderBlock(nn.Module):
    """Pre-norm transformer block on ``nn.MultiheadAttention``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h)[0]
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class MHAEncoder(nn.Module):
    """Tokens ``[B, N, dim]`` (say, a flattened feature map) through ``depth`` MHA blocks."""

    def __init__(self, dim: int = 256, heads: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        out: Tensor = self.norm(self.blocks(tokens))
        return out


class SDPAAttention(nn.Module):
    """Multi-head self-attention written against ``F.scaled_dot_product_attention`` (timm style)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        out: Tensor = self.proj(x.transpose(1, 2).reshape(b, n, d))
        return out


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SDPAAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class TinyViT(nn.Module):
    """Patch embedding, class token, learned positions, ``depth`` SDPA blocks, linear classifier."""

    def __init__(self, image_size: int = 224, patch: int = 16, dim: int = 192, heads: int = 3, depth: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*(ViTBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, images: Tensor) -> Tensor:
        x = self.embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        out: Tensor = self.head(self.norm(self.blocks(x))[:, 0])
        return out
