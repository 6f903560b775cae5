"""Named, ready-to-export models: ``zoo:NAME`` anywhere a MODEL is accepted.

Each entry stands for a trained model: it is built under a fixed seed, and parameters that are zero
at initialisation (SAGAN's ``gamma``, the non-local output conv, ViT tokens) get seeded non-zero
values, so parity and quantization checks exercise the attention branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attn_deploy.zoo import models
from attn_deploy.zoo.blocks import (
    CrossRegionAttention,
    DynamicAttention,
    MultiScaleAttention,
    SelfAttention,
    SmallObjectAttention,
)
from attn_deploy.zoo.detection import DetectorOutputs, _OnLevel, add_attention

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ZooEntry:
    """A named model: how to build it and what it is fed."""

    name: str
    description: str
    build_fn: Callable[[], nn.Module]
    input_shapes: tuple[Shape, ...]
    input_names: tuple[str, ...] = ("input",)
    output_names: tuple[str, ...] = ("output",)
    attention_blocks: int = 1
    #: ``torchscript`` for models ``torch.export`` cannot trace (torchvision detectors).
    preferred_exporter: str = "dynamo"
    is_detector: bool = False
    #: Runs after seeding, to make random weights behave like trained ones (see ``_condition_detector``).
    condition: Callable[[nn.Module], None] | None = None
    #: How a real image becomes this model's input (``check --data photo.jpg``); None: not an image model.
    preprocess: dict[str, Any] | None = None

    def build(self, seed: int = 0) -> nn.Module:
        """Build in eval mode, deterministically, with zero-initialised parameters seeded."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = self.build_fn()
            seed_zero_parameters(model)
            if self.condition is not None:
                self.condition(model)
        return model.eval()

    def example_inputs(self, shapes: tuple[Shape, ...] | None = None, seed: int = 0) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        shapes = shapes or self.input_shapes
        if self.is_detector:  # an image in [0, 1], as torchvision detectors expect
            return tuple(torch.rand(s, generator=gen) for s in shapes)
        return tuple(torch.randn(s, generator=gen) for s in shapes)


def seed_zero_parameters(model: nn.Module) -> None:
    """Give every all-zero parameter a plausible trained value (uses the current RNG)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() == 0 or bool(p.any()):
                continue
            if p.numel() == 1:
                p.uniform_(0.5, 1.0)  # residual gates such as gamma: make the branch count
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / math.sqrt(fan_in))
            else:
                p.normal_(0.0, 0.02)


def _condition_detector(model: nn.Module) -> None:
    """Make a random-weight Faster R-CNN numerically like a trained one.

    Untrained, its ResNet's residual stream grows to values in the hundreds and every class
    score saturates near 1.0, so detections tie and any backend's rounding reorders them. Trained
    networks keep activations O(1) and spread their scores; so: BatchNorm statistics are
    calibrated on random images, residual branches are damped (last BN gamma x0.2, as in
    SkipInit-style training), and classifier logits are scaled so top scores spread over ~0.05-0.5.
    """
    from torchvision.models.resnet import Bottleneck

    detector: Any = model.detector if isinstance(model, DetectorOutputs) else model  # torchvision is untyped
    body: nn.Module = detector.backbone.body
    norms = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    body.train()
    with torch.no_grad():
        body(torch.rand(2, 3, 384, 384) * 2 - 1)
        for block in body.modules():
            if isinstance(block, Bottleneck):
                block.bn3.weight.mul_(0.2)
        detector.roi_heads.box_predictor.cls_score.weight.mul_(5.0)
    body.eval()


def _frcnn(where: str) -> nn.Module:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    detector = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    return DetectorOutputs(add_attention(detector, where))  # type: ignore[arg-type]


def _fpn_levels() -> list[str]:
    return ["0", "1", "2", "3", "pool"]


_FPN_OUTPUTS = ("p2", "p3", "p4", "p5", "pool")
#: torchvision detectors take RGB in [0, 1] and normalise inside; classifiers take ImageNet-normalised RGB.
_DETECTOR_IMAGES = {"range": [0.0, 1.0], "mean": None, "std": None}
_IMAGENET_IMAGES = {"range": [0.0, 1.0], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
_DETECTOR_OUTPUTS = ("boxes", "scores", "labels")

def _frcnn_entry(name: str, attention: str, where: str, *, attention_blocks: int) -> ZooEntry:
    """A torchvision Faster R-CNN ResNet-50-FPN with attention ``where`` (see ``add_attention``)."""
    return ZooEntry(
        name,
        f"torchvision Faster R-CNN ResNet-50-FPN, {attention}",
        lambda: _frcnn(where),
        ((1, 3, 800, 1066),),
        input_names=("images",),
        output_names=_DETECTOR_OUTPUTS,
        attention_blocks=attention_blocks,
        preferred_exporter="torchscript",
        is_detector=True,
        condition=_condition_detector,
        preprocess=_DETECTOR_IMAGES,
    )


_ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry("sagan-256", "SAGAN self-attention, C=256 (an FPN-width feature map)", lambda: SelfAttention(256), ((1, 256, 64, 64),)),
    ZooEntry("sagan-2048", "SAGAN self-attention on ResNet stage 4, C=2048 (800x1333 image)", lambda: SelfAttention(2048), ((1, 2048, 25, 42),)),
    ZooEntry("dynamic-256", "SAGAN with a learnable temperature, C=256", lambda: DynamicAttention(256, temperature=1.5), ((1, 256, 64, 64),)),
    ZooEntry("cross-region-256", "non-local block within 4 horizontal strips, C=256", lambda: CrossRegionAttention(256, strips=4), ((1, 256, 64, 64),)),
    ZooEntry(
        "fpn-multiscale",
        "small conv backbone + FPN, SelfAttention on every level",
        lambda: models.TinyFPN(MultiScaleAttention(128, _fpn_levels())),
        ((1, 3, 256, 256),),
        output_names=_FPN_OUTPUTS,
        attention_blocks=5,
        preprocess=_IMAGENET_IMAGES,
    ),
    ZooEntry(
        "fpn-small-object",
        "small conv backbone + FPN, dilated conv + SelfAttention on the finest level",
        lambda: models.TinyFPN(_OnLevel("0", SmallObjectAttention(128))),
        ((1, 3, 256, 256),),
        output_names=_FPN_OUTPUTS,
        preprocess=_IMAGENET_IMAGES,
    ),
    _frcnn_entry("frcnn-r50-fpn-layer4", "SelfAttention(2048) after layer4", "layer4", attention_blocks=1),
    _frcnn_entry("frcnn-r50-fpn-multiscale", "SelfAttention on every FPN level", "fpn", attention_blocks=5),
    ZooEntry(
        "mha-encoder",
        "2-block transformer encoder on nn.MultiheadAttention, 196 tokens of 256",
        lambda: models.MHAEncoder(256, 8, 2),
        ((1, 196, 256),),
        input_names=("tokens",),
        attention_blocks=2,
    ),
    ZooEntry(
        "sdpa-vit",
        "tiny ViT (4 blocks, dim 192) calling F.scaled_dot_product_attention",
        lambda: models.TinyViT(),
        ((1, 3, 224, 224),),
        input_names=("images",),
        output_names=("logits",),
        attention_blocks=4,
        preprocess=_IMAGENET_IMAGES,
    ),
)

_BY_NAME = {e.name: e for e in _ENTRIES}


def list_entries() -> tuple[ZooEntry, ...]:
    return _ENTRIES


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(_BY_NAME)}") from None
