"""Models as users write them, built in code with random weights: ``tests.user_models.models:NAME`` is a MODEL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VOCAB = 97


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention (one QKV projection, SDPA with an additive mask) and an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class TinyBert(nn.Module):
    """A BERT-like encoder: int64 ``input_ids`` and ``attention_mask`` in, hidden states out."""

    def __init__(self, vocab: int = VOCAB, dim: int = 32, heads: int = 4, layers: int = 2, max_len: int = 64) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, dim), nn.Embedding(max_len, dim)
        self.layers = nn.ModuleList(_EncoderLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.tokens(input_ids) + self.positions.weight[: input_ids.shape[1]]
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -1e4  # padding gets no attention
        for layer in self.layers:
            x = layer(x, bias)
        out: Tensor = self.norm(x)
        return out


def tiny_bert() -> nn.Module:
    """``tests.user_models.models:tiny_bert``: the same weights on every call."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyBert().eval()


def detector() -> nn.Module:
    """``tests.user_models.models:detector``: torchvision's Faster R-CNN (MobileNetV3 FPN), random weights, 64-pixel images."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=5, min_size=64, max_size=64)
    return model.eval()
