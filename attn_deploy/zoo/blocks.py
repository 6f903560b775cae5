"""Attention blocks built on ``torch.ops.attn_deploy.fused_attention``.

In eval mode every block calls the fused op, so inference never materialises the N×N attention
map and export yields one FusedAttention node per block. In training mode a block computes the
map explicitly; with ``return_attention=True`` it also returns it, for ``attention_entropy``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from attn_deploy.ops.torch_op import fused_attention, plain_attention_enabled


def attention_entropy(attn: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean entropy of attention rows (``attn [..., Nq, Nk]``, rows summing to 1): a training regulariser."""
    return -(attn * (attn + eps).log()).sum(dim=-1).mean()


def _attend(q: Tensor, k: Tensor, v: Tensor, scale: float, training: bool) -> tuple[Tensor, Tensor | None]:
    """``q/k/v [B,H,N,d]`` -> (output ``[B,H,Nq,dv]``, attention map in training else None).

    Inside ``plain_attention()`` (``export --no-fuse``) eval mode computes the map too, without the op.
    """
    if training or plain_attention_enabled():
        attn = torch.softmax(torch.matmul(q * scale, k.transpose(-1, -2)), dim=-1)
        return torch.matmul(attn, v), attn
    return fused_attention(q, k, v, scale=scale), None


def _tokens(x: Tensor) -> Tensor:
    """``[B,C,H,W]`` -> ``[B,1,H*W,C]`` (one head)."""
    return x.flatten(2).transpose(1, 2).unsqueeze(1)


class SelfAttention(nn.Module):
    """SAGAN self-attention: 1×1 conv Q/K (C/8 channels) and V (C), ``x + gamma * softmax(QKᵀ)V``.

    ``gamma`` starts at 0, so a freshly built block is the identity.
    """

    def __init__(self, channels: int, reduction: int = 8, return_attention: bool = False) -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"channels ({channels}) must be divisible by reduction ({reduction})")
        inner = channels // reduction
        self.query = nn.Conv2d(channels, inner, kernel_size=1)
        self.key = nn.Conv2d(channels, inner, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.return_attention = return_attention

    def scaled_query(self, x: Tensor) -> Tensor:
        out: Tensor = self.query(x)
        return out

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        q, k, v = _tokens(self.scaled_query(x)), _tokens(self.key(x)), _tokens(self.value(x))
        out, attn = _attend(q, k, v, 1.0, self.training)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        y = x + self.gamma * out
        return (y, attn) if attn is not None and self.return_attention else y


class DynamicAttention(SelfAttention):
    """SelfAttention with a learnable temperature: ``softmax(QKᵀ / T)``.

    T divides the (C/8-channel) query, which costs N·C/8 multiplies instead of N² and keeps the
    op's ``scale`` a constant.
    """

    def __init__(self, channels: int, reduction: int = 8, temperature: float = 1.0, return_attention: bool = False) -> None:
        super().__init__(channels, reduction, return_attention)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))

    def scaled_query(self, x: Tensor) -> Tensor:
        out: Tensor = self.query(x) / self.temperature
        return out


class MultiScaleAttention(nn.Module):
    """One SelfAttention per FPN level, applied to the FPN's ``OrderedDict`` of feature maps."""

    def __init__(self, channels: int, level_names: list[str], reduction: int = 8) -> None:
        super().__init__()
        self.level_names = list(level_names)
        self.blocks = nn.ModuleDict({name: SelfAttention(channels, reduction) for name in level_names})

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        return OrderedDict(
            (name, self.blocks[name](x) if name in self.blocks else x) for name, x in features.items()
        )


class SmallObjectAttention(nn.Module):
    """Dilated 3×3 conv (wider context at full resolution) then SelfAttention: for the finest FPN level."""

    def __init__(self, channels: int, dilation: int = 2, reduction: int = 8) -> None:
        super().__init__()
        self.context = nn.Conv2d(channels, channels, kernel_size=3, padding=dilation, dilation=dilation)
        self.attention = SelfAttention(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.attention(self.context(x))
        return out


class CrossRegionAttention(nn.Module):
    """Non-local block (embedded Gaussian) applied within each of ``strips`` horizontal strips.

    ``z = x + W(softmax(θ(x)ᵀ φ(x)) g(x))`` per strip; strips become the op's head axis, so the
    whole block is one FusedAttention node with ``H = strips``. The input height must be a
    multiple of ``strips``.
    """

    def __init__(self, channels: int, strips: int = 4, inter_channels: int | None = None, return_attention: bool = False) -> None:
        super().__init__()
        inter = inter_channels or max(1, channels // 2)
        self.strips = strips
        self.theta = nn.Conv2d(channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter, kernel_size=1)
        self.g = nn.Conv2d(channels, inter, kernel_size=1)
        self.out = nn.Conv2d(inter, channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)  # the block starts as the identity, as in the non-local paper
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)
        self.return_attention = return_attention

    def _strip_tokens(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # [B, C, K, H/K, W] -> [B, K, (H/K)*W, C]
        return x.reshape(b, c, self.strips, (h // self.strips) * w).permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        b, _, h, w = x.shape
        if torch._C._get_tracing_state() is None and h % self.strips:
            raise ValueError(f"input height {h} is not a multiple of strips={self.strips}")
        q, k, v = (self._strip_tokens(conv(x)) for conv in (self.theta, self.phi, self.g))
        y, attn = _attend(q, k, v, 1.0, self.training)
        y = y.permute(0, 3, 1, 2).reshape(b, -1, h, w)  # strips back in order = concatenation along H
        z = x + self.out(y)
        return (z, attn) if attn is not None and self.return_attention else z
