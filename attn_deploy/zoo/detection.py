"""Put attention into torchvision's Faster R-CNN, and give it tensor outputs for export."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

from torch import Tensor, nn

from attn_deploy.zoo.blocks import MultiScaleAttention, SelfAttention, SmallObjectAttention

Where = Literal["layer4", "fpn", "fpn-finest"]
WHERE_CHOICES: tuple[str, ...] = ("layer4", "fpn", "fpn-finest")


class _ThenAttend(nn.Module):
    """``attention(inner(x))`` for modules returning the FPN's OrderedDict."""

    def __init__(self, inner: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.attention = attention

    def forward(self, x: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        out: OrderedDict[str, Tensor] = self.attention(self.inner(x))
        return out


class _OnLevel(nn.Module):
    """Apply ``block`` to one named level of an OrderedDict of feature maps."""

    def __init__(self, level: str, block: nn.Module) -> None:
        super().__init__()
        self.level = level
        self.block = block

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        return OrderedDict((name, self.block(x) if name == self.level else x) for name, x in features.items())


def add_attention(model: nn.Module, where: Where = "layer4") -> nn.Module:
    """Insert attention into a torchvision Faster R-CNN with a ResNet-FPN backbone, in place.

    ``layer4``: SelfAttention(2048) after ResNet layer4; ``fpn``: one SelfAttention per FPN level
    (pool included); ``fpn-finest``: SmallObjectAttention on the finest level only.
    """
    backbone: Any = getattr(model, "backbone", None)  # torchvision is untyped
    body, fpn = getattr(backbone, "body", None), getattr(backbone, "fpn", None)
    if body is None or fpn is None:
        raise ValueError("add_attention expects a torchvision detector with a ResNet-FPN backbone (model.backbone.body/.fpn)")
    channels = backbone.out_channels
    if where == "layer4":
        layer4 = body.layer4
        body.layer4 = nn.Sequential(layer4, SelfAttention(layer4[-1].conv3.out_channels))
    elif where == "fpn":
        levels = [str(i) for i in range(len(fpn.inner_blocks))]
        if fpn.extra_blocks is not None:
            levels.append("pool")
        backbone.fpn = _ThenAttend(fpn, MultiScaleAttention(channels, levels))
    elif where == "fpn-finest":
        backbone.fpn = _ThenAttend(fpn, _OnLevel("0", SmallObjectAttention(channels)))
    else:
        raise ValueError(f"where must be one of {', '.join(WHERE_CHOICES)}, got {where!r}")
    return model


class DetectorOutputs(nn.Module):
    """Batch-of-one image tensor in, ``(boxes [N,4], scores [N], labels [N])`` out: an export-friendly detector."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        det = self.detector([images[0]])[0]
        return det["boxes"], det["scores"], det["labels"]
