"""Models whose attention is known by construction, for the visualize tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Beacon(nn.Module):
    """Attention on an ``h x w`` feature map where every query attends to one key: ``target`` (row, col).

    Queries are all ones; keys are ``strength`` at the target token and 0 elsewhere, so each row of
    softmax(QKᵀ/√d) puts almost all its mass on the target. Values come from the image (the output
    depends on the input).
    """

    def __init__(self, channels: int, h: int, w: int, target: tuple[int, int], strength: float = 12.0) -> None:
        super().__init__()
        beacon = torch.zeros(1, 1, h * w, 4)
        beacon[..., target[0] * w + target[1], :] = strength
        self.register_buffer("beacon", beacon)
        self.value = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = torch.ones(b, 1, h * w, 4, dtype=x.dtype) + 0 * x.mean()
        k = self.beacon.expand(b, -1, -1, -1) + 0 * x.mean()
        v = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)


class BeaconNet(nn.Module):
    """A stride-8 patch embedding, then ``Beacon`` on the 8x8 grid of a 64x64 image (target at row 2, col 5)."""

    TARGET = (2, 5)

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, kernel_size=8, stride=8)
        self.attention = Beacon(8, 8, 8, self.TARGET)

    def forward(self, images: Tensor) -> Tensor:
        out: Tensor = self.attention(self.embed(images))
        return out


class WindowBeaconNet(nn.Module):
    """Stride-4 patches of a 32x32 image (8x8 tokens), Swin-style windows of 4x4 on the batch axis, and
    attention where every query attends to token ``TARGET`` (row 1, col 1) of its own window."""

    TARGET = 5

    def __init__(self, channels: int = 8, window: int = 4) -> None:
        super().__init__()
        self.window = window
        self.embed = nn.Conv2d(3, channels, kernel_size=4, stride=4)
        beacon = torch.zeros(1, 1, window * window, 4)
        beacon[..., self.TARGET, :] = 12.0
        self.register_buffer("beacon", beacon)
        self.value = nn.Linear(channels, channels)

    def forward(self, images: Tensor) -> Tensor:
        x = self.embed(images)
        b, c, h, w = x.shape
        ws = self.window
        tokens = x.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, 1, ws * ws, c)
        q = torch.ones(tokens.shape[0], 1, ws * ws, 4, dtype=x.dtype) + 0 * tokens.mean()
        k = self.beacon.expand(tokens.shape[0], -1, -1, -1) + 0 * tokens.mean()
        out = F.scaled_dot_product_attention(q, k, self.value(tokens))
        return out.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
