"""Scores masked with ``masked_fill(mask, -inf)`` (or ``torch.where(keep, scores, -inf)``), the way
hand-written causal and padding masks are written: fused with the mask as an additive ``-inf`` term."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import Tensor

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.fuse import fuse_model
from tests.conftest import run_ort
from tests.fuse.models import HandWritten, export, max_rel_error, random_feeds


class Causal(HandWritten):
    """A causal mask kept as a buffer of ones and zeros, compared with 0 where it is applied."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("tril", torch.tril(torch.ones(8, 8)).view(1, 1, 8, 8))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.split(x)
        n = x.shape[1]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / q.shape[-1] ** 0.5)
        scores = scores.masked_fill(self.tril[:, :, :n, :n] == 0, float("-inf"))
        return self.merge(torch.softmax(scores, dim=-1) @ v)


class KeyPadding(HandWritten):
    """``keep [B, N]`` (True: a real token) from the caller; padded keys get no weight."""

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:  # type: ignore[override]
        q, k, v = self.split(x)
        scores = (q @ k.transpose(-2, -1)) * 0.25
        return self.merge(scores.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(dim=-1) @ v)


class KeyPaddingWhere(KeyPadding):
    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        q, k, v = self.split(x)
        scores = torch.where(keep[:, None, None, :], (q @ k.transpose(-2, -1)) * 0.25, float("-inf"))
        return self.merge(scores.softmax(dim=-1) @ v)


def _fused(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, str]:
    outcome = fuse_model(model)
    assert len(outcome.fused) == 1, outcome.near_misses
    assert len(fused_attention_nodes(outcome.model)) == 1
    assert not any(n.op_type == "Softmax" for n in outcome.model.graph.node)
    assert max_rel_error(model, outcome.model, feeds) <= 1e-5
    return outcome.model, outcome.fused[0]["pattern"]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_causal_mask(exporter: str) -> None:
    model = export(Causal(), (1, 8, 16), exporter, 18)
    feeds = random_feeds(model)
    fused, pattern = _fused(model, feeds)
    assert "-inf mask" in pattern
    # Causal in the fused model too: a later token does not change an earlier one's output.
    moved = {"x": feeds["x"].copy()}
    moved["x"][:, -1] += 1.0
    (before,), (after,) = run_ort(fused, feeds), run_ort(fused, moved)
    np.testing.assert_array_equal(before[:, :-1], after[:, :-1])
    assert not np.allclose(before[:, -1], after[:, -1])


@pytest.mark.parametrize("block", [KeyPadding, KeyPaddingWhere])
def test_key_padding_mask_from_an_input(block: type[KeyPadding]) -> None:
    buffer = io.BytesIO()
    keep = torch.tensor([[True] * 6 + [False] * 2, [True] * 8])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(block().eval(), (torch.randn(2, 8, 16), keep), buffer, dynamo=False, opset_version=18, input_names=["x", "keep"])
    model = onnx.load_from_string(buffer.getvalue())
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 8, 16), dtype=np.float32), "keep": keep.numpy()}
    fused, _ = _fused(model, feeds)
    # The padded keys of the first sequence have no weight: changing them changes nothing there.
    moved = {"x": feeds["x"].copy(), "keep": feeds["keep"]}
    moved["x"][0, 6:] += 1.0
    (before,), (after,) = run_ort(fused, feeds), run_ort(fused, moved)
    np.testing.assert_allclose(after[0, :6], before[0, :6], rtol=0, atol=1e-6)
