"""Tiny attention modules written the way users write them (no attn-deploy inside), and helpers
to export them with plain ``torch.onnx.export`` and compare ONNX Runtime outputs."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.conftest import run_ort


class SaganVAt(nn.Module):
    """The seed's SAGAN block: ``bmm(V, softmax(Q^T K / T)^T)``, 1x1 conv projections."""

    def __init__(self, c: int = 16, temperature: float | None = 1.7) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Conv2d(c, c // 8, 1), nn.Conv2d(c, c // 8, 1), nn.Conv2d(c, c, 1)
        self.temperature = temperature
        self.gamma = nn.Parameter(torch.tensor(0.7))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.q(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.k(x).view(b, -1, h * w)
        v = self.v(x).view(b, -1, h * w)
        energy = torch.bmm(q, k)
        if self.temperature is not None:
            energy = energy / self.temperature
        attn = torch.softmax(energy, dim=-1)
        out = torch.bmm(v, attn.permute(0, 2, 1)).view(b, c, h, w)
        return x + self.gamma * out


class SaganAVt(SaganVAt):
    """SAGAN's other layout: ``bmm(softmax(s * Q^T K), V^T)``, scale as a Mul."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.q(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.k(x).view(b, -1, h * w)
        v = self.v(x).view(b, -1, h * w)
        attn = torch.softmax(torch.bmm(q, k) * 0.5, dim=-1)
        out = torch.bmm(attn, v.permute(0, 2, 1)).permute(0, 2, 1).reshape(b, c, h, w)
        return x + self.gamma * out


class _Heads(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    @staticmethod
    def merge(o: Tensor) -> Tensor:
        b, h, n, d = o.shape
        return o.transpose(1, 2).reshape(b, n, h * d)


class HandWritten(_Heads):
    """``softmax(q @ k.transpose(-2, -1) * s) @ v``."""

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
        return self.merge(attn @ v)


class Sdpa(_Heads):
    """``F.scaled_dot_product_attention`` with no mask, a float (additive) mask, a bool mask, or causal."""

    def __init__(self, mask: str | None = None, n: int = 8, dim: int = 16, heads: int = 2) -> None:
        super().__init__(dim, heads)
        self.mask_kind = mask
        gen = torch.Generator().manual_seed(1)
        self.register_buffer("float_mask", torch.randn(n, n, generator=gen))
        keep = torch.rand(n, n, generator=gen) > 0.3
        keep[:, 0] = True  # every row attends somewhere
        self.register_buffer("bool_mask", keep)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        mask = {"float": self.float_mask, "bool": self.bool_mask}.get(self.mask_kind or "")
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.mask_kind == "causal"))


class Mha(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, need_weights: bool = False) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


class TwoBlocks(nn.Module):
    """Two SDPA blocks and a softmax classifier head that is not attention."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = Sdpa(), Sdpa("float")
        self.head = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.b(self.a(x))).softmax(dim=-1)


def export(model: nn.Module, shape: tuple[int, ...], exporter: str, opset: int) -> onnx.ModelProto:
    """Plain ``torch.onnx.export``, as a user without attn-deploy would run it."""
    model.eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # MHA's fused aten op has no ONNX export
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                return torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, input_names=["x"], verbose=False).model_proto
            buffer = io.BytesIO()
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset, input_names=["x"])
            return onnx.load_from_string(buffer.getvalue())
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in vi.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = rng.random(shape) > 0.3 if dtype == np.bool_ else rng.standard_normal(shape).astype(dtype)
    return feeds


def max_rel_error(a: onnx.ModelProto, b: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    """Largest ``max|a - b| / max|a|`` over the outputs of the two models in ONNX Runtime."""
    worst = 0.0
    for x, y in zip(run_ort(a, feeds), run_ort(b, feeds), strict=True):
        assert x.shape == y.shape
        worst = max(worst, float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-30)))
    return worst
