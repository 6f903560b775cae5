"""Models users bring, built in code with random weights (no downloads): the seed article's
``SelfAttention`` exactly as written (``benchmarks/_seed.py``), its temperature variant, that block
after ``layer4`` of a torchvision Faster R-CNN, torchvision ``swin_t``, and small builds of
torchvision's MaxViT (attention written with ``torch.einsum`` on ``[B, G, H, N, d]``) and Swin V2
(cosine attention: the scores multiplied by a learnt factor per head).

Each is a zero-argument factory (``tests.user_models.hand_written:NAME`` works as MODEL on the command line),
seeded, so two calls give the same weights. Input shapes are in ``SHAPES``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._seed import SeedSelfAttention


class DynamicAttention(SeedSelfAttention):
    """The article's ``DynamicAttention``: the seed block with ``softmax(energy / self.temp)``,
    a learnable temperature (its forward is elided in the article: "same as SelfAttention")."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels)
        self.temp = nn.Parameter(torch.ones(1) * 0.5)

    def forward(self, x: Tensor) -> Tensor:
        batch_size, C, height, width = x.size()
        Q = self.query(x).view(batch_size, -1, height * width).permute(0, 2, 1)
        K = self.key(x).view(batch_size, -1, height * width)
        V = self.value(x).view(batch_size, -1, height * width)
        energy = torch.bmm(Q, K)
        attention = F.softmax(energy / self.temp, dim=-1)
        out = torch.bmm(V, attention.permute(0, 2, 1))
        out = out.view(batch_size, C, height, width)
        return self.gamma * out + x


class AttentionWrapper(nn.Module):
    """The article's wrapper: ``layer`` then the seed block on its output (ResNet-50 stage 4: 2048 channels)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.attention = SeedSelfAttention(2048)

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(self.layer(x))


def _seeded(block: nn.Module) -> nn.Module:
    """``block`` in eval mode with ``gamma`` non-zero: the article initialises it to 0, which
    would make the attention branch invisible in the output."""
    for m in block.modules():
        if isinstance(m, SeedSelfAttention):
            with torch.no_grad():
                m.gamma.fill_(0.5)
    return block.eval()


def seed_block() -> nn.Module:
    torch.manual_seed(0)
    return _seeded(SeedSelfAttention(16))


def seed_block_temperature() -> nn.Module:
    torch.manual_seed(0)
    return _seeded(DynamicAttention(16))


def faster_rcnn_with_attention() -> nn.Module:
    """torchvision Faster R-CNN ResNet-50-FPN with the seed block after ``layer4`` (the article's
    ``add_attention_to_backbone``), small images."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=96, max_size=128)
    model.backbone.body.layer4 = AttentionWrapper(model.backbone.body.layer4)
    return _seeded(model)


def faster_rcnn_backbone_with_attention() -> nn.Module:
    """The backbone (ResNet-50 + the seed block + FPN) of ``faster_rcnn_with_attention``: what
    ``--submodule backbone`` exports, as a model of its own so ``check`` can run it too."""
    return faster_rcnn_with_attention().backbone.eval()  # type: ignore[no-any-return]


def swin_t() -> nn.Module:
    """torchvision ``swin_t``: 12 window-attention blocks, 2 of them shifted (with the per-window
    mask) at 64x64, where stages 3 and 4 are one window and torchvision turns the shift off."""
    from torchvision.models import swin_t as build

    torch.manual_seed(0)
    return build(weights=None).eval()


def maxvit() -> nn.Module:
    """torchvision's ``MaxVit`` architecture, two stages of one block each (block and grid
    attention per block, 4 attentions), 64x64 input: the same code as ``maxvit_t``, smaller."""
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    return MaxVit(input_size=(64, 64), stem_channels=16, partition_size=4, block_channels=[16, 32], block_layers=[1, 1],
                  head_dim=8, stochastic_depth_prob=0.0, num_classes=10).eval()


def swin_v2() -> nn.Module:
    """torchvision's Swin V2 (``swin_v2_t``'s blocks and patch merging), two stages of two blocks,
    window 4, 32x32 input: cosine attention with ``exp(logit_scale)`` per head and the continuous
    position bias; the first stage's second block shifts its windows (the second stage is one
    window, where torchvision turns the shift off)."""
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

    torch.manual_seed(0)
    model = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                            stochastic_depth_prob=0.0, num_classes=10, block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)
    return model.eval()


def maxvit_t() -> nn.Module:
    """torchvision ``maxvit_t`` (224x224; 28 attentions), random weights: for benchmarks."""
    from torchvision.models import maxvit_t as build

    torch.manual_seed(0)
    return build(weights=None).eval()


def swin_v2_t() -> nn.Module:
    """torchvision ``swin_v2_t`` (256x256; 12 attentions), random weights: for benchmarks."""
    from torchvision.models import swin_v2_t as build

    torch.manual_seed(0)
    return build(weights=None).eval()


#: factory name -> (input shape, attention blocks)
SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "seed_block": ((1, 16, 6, 5), 1),
    "seed_block_temperature": ((1, 16, 6, 5), 1),
    "faster_rcnn_backbone_with_attention": ((1, 3, 96, 128), 1),
    "swin_t": ((1, 3, 64, 64), 12),
    "maxvit": ((1, 3, 64, 64), 4),
    "swin_v2": ((1, 3, 32, 32), 4),
}


class ConvQkvChunk(nn.Module):
    """SAGAN-style attention whose Q, K, V come from one 1x1 conv, ``chunk``ed three ways."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.d = c // 4
        self.qkv = nn.Conv2d(c, 2 * self.d + c, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).split([self.d, self.d, c], dim=1)
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)
        return x + torch.bmm(v, attn.transpose(1, 2)).view(b, c, h, w)


class LinearQkvSlice(nn.Module):
    """Multi-head attention from one Linear sliced three ways, the scale folded into Q first."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x)
        q, k, v = (qkv[..., i * self.dim:(i + 1) * self.dim].reshape(b, n, self.heads, -1).transpose(1, 2) for i in range(3))
        q = q * (self.dim // self.heads) ** -0.5
        out = (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return out.transpose(1, 2).reshape(b, n, self.dim)


class LinearQkvUnbind(LinearQkvSlice):
    """One Linear, ``unflatten`` + ``unbind`` into Q, K, V, attention over a learnable temperature."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__(dim, heads)
        self.temperature = nn.Parameter(torch.tensor(1.3))

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
        out = ((q @ k.transpose(-2, -1)) / self.temperature).softmax(dim=-1) @ v
        return out.transpose(1, 2).reshape(b, n, self.dim)


def conv_qkv_chunk() -> nn.Module:
    torch.manual_seed(0)
    return ConvQkvChunk().eval()


def linear_qkv_slice() -> nn.Module:
    torch.manual_seed(0)
    return LinearQkvSlice().eval()


def linear_qkv_unbind() -> nn.Module:
    torch.manual_seed(0)
    return LinearQkvUnbind().eval()


def shifted_window_attention() -> nn.Module:
    """torchvision's Swin block attention alone: 2x2 windows of 4x4, shifted by 2 (the per-window
    mask), relative-position bias gathered from its table."""
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    torch.manual_seed(0)
    block = ShiftedWindowAttention(16, window_size=[4, 4], shift_size=[2, 2], num_heads=2)
    with torch.no_grad():
        block.relative_position_bias_table.normal_()  # torchvision starts it at ~0.02: make it matter
    return block.eval()


SHAPES.update({
    "conv_qkv_chunk": ((1, 16, 6, 5), 1),
    "linear_qkv_slice": ((1, 8, 16), 1),
    "linear_qkv_unbind": ((1, 8, 16), 1),
    "shifted_window_attention": ((1, 8, 8, 16), 1),
})
