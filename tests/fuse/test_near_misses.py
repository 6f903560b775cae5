"""Subgraphs that look like attention but are not exactly the contract are left alone, with a reason."""

from __future__ import annotations

import io
import warnings

import onnx
import pytest
import torch
from torch import Tensor, nn

from attn_deploy.fuse import fuse_model
from tests.fuse.models import HandWritten, Mha, export, max_rel_error, random_feeds


class SoftmaxOnAxis1(HandWritten):
    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        return self.merge((q @ k.transpose(-2, -1) * 0.3).softmax(dim=1) @ v)


class ScaleFromInput(HandWritten):
    def forward(self, x: Tensor, s: Tensor) -> Tensor:  # type: ignore[override]
        q, k, v = self.split(x)
        return self.merge((q @ k.transpose(-2, -1) * s).softmax(dim=-1) @ v)


class MultiplicativeMask(HandWritten):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", (torch.rand(8, 8, generator=torch.Generator().manual_seed(2)) > 0.3).float())

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        return self.merge((q @ k.transpose(-2, -1) * self.mask).softmax(dim=-1) @ v)


class MaskAfterSoftmax(MultiplicativeMask):
    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        return self.merge(((q @ k.transpose(-2, -1) * 0.3).softmax(dim=-1) * self.mask) @ v)


class SoftmaxOverAllScores(HandWritten):
    """The scores flattened per head before the softmax: one distribution over all N×N, not per row."""

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        s = q @ k.transpose(-2, -1) * 0.3
        b, h, n, _ = s.shape
        return self.merge(s.reshape(b, h, n * n).softmax(dim=-1).reshape(b, h, n, n) @ v)


class BiasBeforeAFactorPerQuery(HandWritten):
    """``(S + b) · m`` with ``m`` constant along the keys: ``m`` would have to multiply the bias too."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.linspace(0.5, 2.0, 2).reshape(2, 1, 1))
        self.bias = nn.Parameter(torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(3)))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        return self.merge(((q @ k.transpose(-2, -1) + self.bias) * self.logit_scale.exp()).softmax(dim=-1) @ v)


class FactorFromTheScores(HandWritten):
    """A factor constant along the keys, but computed from the scores (each row's maximum)."""

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        s = q @ k.transpose(-2, -1)
        return self.merge((s * s.amax(dim=-1, keepdim=True)).softmax(dim=-1) @ v)


class GroupedBias(HandWritten):
    """Rank-5 scores ``[B, G, H, N, N]`` plus a term that differs per group G."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(4)))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (t.reshape(1, 2, 4, 2, 8).transpose(2, 3) for t in self.split(x))  # [B, H, N, d] as [B, H, 2, N/2, d]
        o = torch.einsum("bghij,bghjd->bghid", (torch.einsum("bghid,bghjd->bghij", q, k) + self.bias).softmax(dim=-1), v)
        return o.transpose(2, 3).reshape(1, 8, 16)


class FiniteMaskFill(HandWritten):
    """``masked_fill(mask, -1e9)``: a fully masked row weighs its keys equally, which no additive term does."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("tril", torch.tril(torch.ones(8, 8)).bool())

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        return self.merge((q @ k.transpose(-2, -1) * 0.25).masked_fill(~self.tril, -1e9).softmax(dim=-1) @ v)


class SliceUpdatedInPlace(HandWritten):
    """MViT's relative-position terms: added in place to the scores of the tokens after the first
    (the class token's row and column keep theirs), which exports as Slice, Add and ScatterND."""

    def __init__(self) -> None:
        super().__init__()
        self.rel = nn.Parameter(torch.randn(2, 7, 7, generator=torch.Generator().manual_seed(5)))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        attn = q @ k.transpose(-2, -1) * 0.25
        attn[:, :, 1:, 1:] += self.rel
        return self.merge(attn.softmax(dim=-1) @ v)


class WeightsReturned(Mha):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return self.attn(x, x, x, need_weights=True)


def _left_alone(model: onnx.ModelProto, reason: str) -> None:
    outcome = fuse_model(model)
    assert outcome.fused == []
    assert any(reason in m["reason"] for m in outcome.near_misses), outcome.near_misses
    assert any(n.op_type == "Softmax" for n in outcome.model.graph.node)
    assert max_rel_error(model, outcome.model, random_feeds(model)) == 0.0


#: (block, exporter, the reason given): each exported at opset 18 with input [1, 8, 16].
CASES = [
    (SoftmaxOnAxis1, "dynamo", "not the last axis"),
    (MultiplicativeMask, "torchscript", "multiplicative mask"),
    (MaskAfterSoftmax, "torchscript", "not to a MatMul with V"),
    (WeightsReturned, "dynamo", "consumers"),
    (SoftmaxOverAllScores, "dynamo", "not reshaped back"),
    (SoftmaxOverAllScores, "torchscript", "not reshaped back"),
    (BiasBeforeAFactorPerQuery, "dynamo", "before a factor per query"),
    (FactorFromTheScores, "torchscript", "computed from the scores themselves"),
    (GroupedBias, "dynamo", "varies over their two leading axes"),
    (FiniteMaskFill, "torchscript", "only -inf is exact"),
    (SliceUpdatedInPlace, "dynamo", "partly overwritten by ScatterND"),
]


@pytest.mark.parametrize(("block", "exporter", "reason"), CASES, ids=[f"{c[0].__name__}-{c[1]}" for c in CASES])
def test_left_alone_with_its_reason(block: type[torch.nn.Module], exporter: str, reason: str) -> None:
    _left_alone(export(block(), (1, 8, 16), exporter, 18), reason)


def test_scale_from_a_graph_input() -> None:
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ScaleFromInput().eval(), (torch.randn(1, 8, 16), torch.tensor(0.3)), buffer, dynamo=False, opset_version=18, input_names=["x", "s"])
    _left_alone(onnx.load_from_string(buffer.getvalue()), "not a constant")
