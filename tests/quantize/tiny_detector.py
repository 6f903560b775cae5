"""``tests.quantize.tiny_detector:tiny_detector``: a detector built in code as users write one (convolutions
to a stride-8 grid, box and class heads, the 20 best boxes, torchvision's output layout), random weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TinyDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU())
        self.box, self.cls = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 5, 1)

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        feature = self.body(images)
        h, w = feature.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
        centres = (torch.stack((xs, ys), -1).reshape(-1, 2) + 0.5) * 8
        distances = F.softplus(self.box(feature)).flatten(2).transpose(1, 2) * 8
        boxes = torch.cat((centres - distances[..., :2], centres + distances[..., 2:]), -1)
        scores, labels = self.cls(feature).flatten(2).transpose(1, 2).sigmoid().max(-1)
        best, index = scores[0].topk(20)
        return [{"boxes": boxes[0, index], "scores": best, "labels": labels[0, index]}]


def tiny_detector() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyDetector().eval()
