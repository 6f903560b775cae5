"""Detectors built in code the way users write them, for the static-int8 acceptance runs (issue #18).

Not ours and not from the zoo: random weights, with BatchNorm statistics set on photographs (a
forward pass in training mode over scikit-image's samples) so activations have the ranges a trained
network's would, not the unit variance of a fresh initialisation. Both return torchvision's detector
layout (a list with one ``{"boxes", "scores", "labels"}`` dict per image), which export recognises.

* ``yolo_style``: a C2f/CSP backbone (YOLOv8-like widths), SPPF, a position-sensitive attention block
  written by hand (Q/K/V split from one 1×1 conv, ``softmax(qᵀk)``, V channel-first), a decoupled
  anchor-free head at strides 8/16/32, decoded to boxes and the 100 best scores (no NMS in graph).
* ``detr_style``: torchvision's ResNet-50 to ``layer4``, a 1×1 projection to 256, a sine position
  embedding, ``nn.Transformer`` (6 encoder and 6 decoder layers over ``nn.MultiheadAttention``),
  100 object queries, class and box heads, the 100 queries' best non-background scores.

Use as ``MODEL`` specs: ``_detectors:yolo_style`` with ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

YOLO_SIZE = (640, 640)
DETR_SIZE = (512, 512)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photographs(size: tuple[int, int]) -> Tensor:
    """scikit-image's sample photographs as a ``[N,3,H,W]`` batch in [0, 1], resized to ``size``."""
    import numpy as np
    import skimage.data
    from PIL import Image

    images = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(size[::-1])
        images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(images)


def set_batchnorm_statistics(model: nn.Module, images: Tensor) -> None:
    """Running mean/var of every BatchNorm from ``images`` (a cumulative average), then eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for image in images:
            model(image[None])
    model.eval()


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU() if act else nn.Identity())


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = ConvBN(c, c, 3), ConvBN(c, c, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.cv2(self.cv1(x))
        return out


class C2f(nn.Module):
    """CSP with two convolutions: split, a chain of bottlenecks, concatenate every stage."""

    def __init__(self, cin: int, cout: int, n: int) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBN(cin, 2 * self.c)
        self.blocks = nn.ModuleList(Bottleneck(self.c) for _ in range(n))
        self.cv2 = ConvBN((2 + n) * self.c, cout)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.cv1(x).chunk(2, 1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        out: Tensor = self.cv2(torch.cat(parts, 1))
        return out


class SPPF(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = ConvBN(c, c // 2), ConvBN(c // 2 * 4, c)

    def forward(self, x: Tensor) -> Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(F.max_pool2d(y[-1], 5, 1, 2))
        out: Tensor = self.cv2(torch.cat(y, 1))
        return out


class PositionSensitiveAttention(nn.Module):
    """Multi-head attention over a feature map, with a depth-wise convolution of V as positional term."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.key_dim = self.head_dim // 2
        self.scale = self.key_dim ** -0.5
        self.qkv = ConvBN(dim, dim + 2 * self.key_dim * heads, act=False)
        self.proj = ConvBN(dim, dim, act=False)
        self.pe = ConvBN(dim, dim, 3, groups=dim, act=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.heads, 2 * self.key_dim + self.head_dim, h * w).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        result: Tensor = self.proj(out)
        return result


class PSABlock(nn.Module):
    """Half the channels through attention and a feed-forward, the other half untouched (as in C2PSA)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c // 2
        self.cv1, self.cv2 = ConvBN(c, 2 * self.c), ConvBN(2 * self.c, c)
        self.attn = PositionSensitiveAttention(self.c, heads=max(self.c // 64, 1))
        self.ffn = nn.Sequential(ConvBN(self.c, 2 * self.c), ConvBN(2 * self.c, self.c, act=False))

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        out: Tensor = self.cv2(torch.cat((a, b), 1))
        return out


class YoloStyle(nn.Module):
    """Backbone to strides 8/16/32, attention on the coarsest level, an anchor-free decoupled head."""

    def __init__(self, num_classes: int = 80, width: tuple[int, ...] = (16, 32, 64, 128, 256), top_k: int = 100) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = width
        self.stem = nn.Sequential(ConvBN(3, c0, 3, 2), ConvBN(c0, c1, 3, 2), C2f(c1, c1, 1))
        self.p3 = nn.Sequential(ConvBN(c1, c2, 3, 2), C2f(c2, c2, 2))
        self.p4 = nn.Sequential(ConvBN(c2, c3, 3, 2), C2f(c3, c3, 2))
        self.p5 = nn.Sequential(ConvBN(c3, c4, 3, 2), C2f(c4, c4, 1), SPPF(c4), PSABlock(c4))
        self.box = nn.ModuleList(nn.Sequential(ConvBN(c, 64, 3), ConvBN(64, 64, 3), nn.Conv2d(64, 4, 1)) for c in (c2, c3, c4))
        self.cls = nn.ModuleList(nn.Sequential(ConvBN(c, 80, 3), ConvBN(80, 80, 3), nn.Conv2d(80, num_classes, 1))
                                 for c in (c2, c3, c4))
        self.top_k = top_k

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        x3 = self.p3(self.stem(images))
        x4 = self.p4(x3)
        x5 = self.p5(x4)
        boxes, logits = [], []
        for feature, stride, box_head, cls_head in zip((x3, x4, x5), (8, 16, 32), self.box, self.cls, strict=True):
            _, _, h, w = feature.shape
            ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
            centres = (torch.stack((xs, ys), -1).reshape(-1, 2) + 0.5) * stride
            distances = F.softplus(box_head(feature)).flatten(2).transpose(1, 2) * stride  # left, top, right, bottom
            boxes.append(torch.cat((centres - distances[..., :2], centres + distances[..., 2:]), -1))
            logits.append(cls_head(feature).flatten(2).transpose(1, 2))
        scores, labels = torch.cat(logits, 1).sigmoid().max(-1)
        best, index = scores[0].topk(self.top_k)
        return [{"boxes": torch.cat(boxes, 1)[0, index], "scores": best, "labels": labels[0, index]}]


def yolo_style() -> nn.Module:
    """``_detectors:yolo_style``: 640×640 input, random weights, BatchNorm set on photographs."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = YoloStyle()
    set_batchnorm_statistics(model, photographs(YOLO_SIZE))
    return model


def sine_positions(h: int, w: int, dim: int) -> Tensor:
    """DETR's 2-D sine embedding, ``[h·w, dim]``: half the channels for y, half for x."""
    quarter = dim // 4
    freq = 10000 ** (-torch.arange(quarter, dtype=torch.float32) / quarter)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    y = torch.cat(((ys[:, None] * freq).sin(), (ys[:, None] * freq).cos()), -1)[:, None].expand(h, w, 2 * quarter)
    x = torch.cat(((xs[:, None] * freq).sin(), (xs[:, None] * freq).cos()), -1)[None].expand(h, w, 2 * quarter)
    return torch.cat((y, x), -1).reshape(h * w, dim)


class DetrStyle(nn.Module):
    def __init__(self, num_classes: int = 91, dim: int = 256, queries: int = 100) -> None:
        super().__init__()
        from torchvision.models import resnet50

        trunk = resnet50(weights=None)
        self.backbone = nn.Sequential(*list(trunk.children())[:-2])
        self.input_proj = nn.Conv2d(2048, dim, 1)
        self.transformer = nn.Transformer(dim, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                                          dim_feedforward=1024, dropout=0.0, batch_first=True)
        self.query = nn.Parameter(torch.randn(1, queries, dim))
        self.class_head = nn.Linear(dim, num_classes + 1)
        self.box_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 4))

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        feature = self.input_proj(self.backbone(images))
        b, c, h, w = feature.shape
        tokens = feature.flatten(2).transpose(1, 2) + sine_positions(h, w, c)
        decoded = self.transformer(tokens, self.query.expand(b, -1, -1))
        probabilities = self.class_head(decoded).softmax(-1)[..., :-1]
        scores, labels = probabilities.max(-1)
        cx, cy, bw, bh = self.box_head(decoded).sigmoid().unbind(-1)
        size = torch.tensor([images.shape[-1], images.shape[-2]] * 2, dtype=images.dtype)
        boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), -1) * size
        return [{"boxes": boxes[0], "scores": scores[0], "labels": labels[0]}]


def detr_style() -> nn.Module:
    """``_detectors:detr_style``: 512×512 input, random weights, BatchNorm set on photographs."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DetrStyle()
    set_batchnorm_statistics(model, photographs(DETR_SIZE))
    return model
