"""Models users bring (tests/user_models/hand_written.py), exported with plain ``torch.onnx.export`` at opsets 17
and 18: ``fuse`` finds every attention, and the fused model matches the original in ONNX Runtime
on inputs the outputs depend on.

Swin's two shifted-window blocks (at 64x64) add their mask to a ``[B, nW, H, N, N]`` view of the
scores; the other ten add the relative-position bias gathered from a table. MaxViT and Swin V2
are built small from torchvision's own classes.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.fuse import fuse_model
from tests.fuse import models as M
from tests.user_models import hand_written as U

REL_TOL = 1e-5

SMALL = ["seed_block", "seed_block_temperature"]
#: (factory, exporter, opset): the dynamo exporter at opset 17 converts versions, which takes
#: minutes for swin_t on CI's two cores, so the large models run it at 18 only.
LARGE = [
    pytest.param(name, exporter, opset, marks=pytest.mark.slow, id=f"{name}-{exporter}-{opset}")
    for name in ("faster_rcnn_backbone_with_attention", "swin_t")
    for exporter, opset in (("torchscript", 17), ("torchscript", 18), ("dynamo", 18))
]


def _fuses_every_attention(name: str, exporter: str, opset: int) -> dict[str, str]:
    shape, blocks = U.SHAPES[name]
    original = M.export(getattr(U, name)(), shape, exporter, opset)
    outcome = fuse_model(original)
    assert len(outcome.fused) == blocks, outcome.near_misses
    assert len(fused_attention_nodes(outcome.model)) == blocks
    assert not any(n.op_type == "Softmax" for n in outcome.model.graph.node)
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (original, outcome.model)]
    (want, want_other), (got, got_other) = ([s.run(None, M.random_feeds(original, seed)) for seed in (0, 1)] for s in sessions)
    for w, g, w_other, g_other in zip(want, got, want_other, got_other, strict=True):
        for a, b in ((w, g), (w_other, g_other)):
            assert float(np.max(np.abs(a - b))) <= REL_TOL * float(np.max(np.abs(a)))
        assert not np.allclose(w, w_other), "the output does not depend on the input"
    return {r["name"]: r["pattern"] for r in outcome.fused}


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", SMALL)
def test_seed_block_as_written(name: str, exporter: str, opset: int) -> None:
    (pattern,) = _fuses_every_attention(name, exporter, opset).values()
    assert pattern.startswith("sagan (V·Aᵀ")
    assert ("scale on scores" in pattern) == (name == "seed_block_temperature")


@pytest.mark.parametrize(("name", "exporter", "opset"), LARGE)
def test_detector_backbone_and_swin(name: str, exporter: str, opset: int) -> None:
    patterns = _fuses_every_attention(name, exporter, opset)
    if name == "swin_t":  # every block has the relative-position bias; two add the window mask too
        assert sum("2 additive biases" in p for p in patterns.values()) == 2
        assert sum("; additive bias" in p for p in patterns.values()) == 10


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_maxvit_einsum_attention(exporter: str) -> None:
    """torchvision's MaxViT writes Q·Kᵀ and P·V with ``torch.einsum`` on ``[B, G, H, N, d]`` and adds
    a relative-position bias ``[1, H, N, N]``: both exporters keep ``Einsum``; each of the four
    attentions (block and grid, two stages) runs as ``[B·G, H, N, d]``."""
    patterns = _fuses_every_attention("maxvit", exporter, 18)
    assert all(p.startswith("attention rank-5") and "additive bias" in p for p in patterns.values()), patterns


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_swin_v2_cosine_attention(exporter: str) -> None:
    """Swin V2 multiplies the scores of normalised Q and K by ``exp(logit_scale)`` per head (``[H, 1, 1]``,
    constant along the keys), which moves onto Q; then adds ``16·sigmoid`` of its continuous
    position bias, and the window mask in the one shifted block."""
    patterns = _fuses_every_attention("swin_v2", exporter, 18)
    assert all("a factor per query, on Q" in p for p in patterns.values()), patterns
    assert sum("2 additive biases" in p for p in patterns.values()) == 1


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", ["shifted_window_attention", "conv_qkv_chunk", "linear_qkv_slice", "linear_qkv_unbind"])
def test_forms_real_models_write(name: str, exporter: str, opset: int) -> None:
    """Swin's shifted windows (mask added to a per-window view of the scores, relative-position
    bias from a table), Q/K/V from one conv or linear split three ways, scale folded into Q."""
    (pattern,) = _fuses_every_attention(name, exporter, opset).values()
    if name == "shifted_window_attention":
        assert "2 additive biases" in pattern and "scale on q" in pattern
    if name == "linear_qkv_slice":
        assert "scale on q" in pattern


@pytest.mark.parametrize("batch", [1, 2])
def test_the_window_mask_is_not_expanded_over_the_heads(batch: int) -> None:
    """Swin's per-window mask ``[1, nW, 1, N, N]`` becomes ``[B·nW, 1, N, N]`` for FusedAttention (the
    heads stay a broadcast axis: no ``[B·nW, H, N, N]`` copy), and the fused model matches the original."""
    import onnx

    original = M.export(U.shifted_window_attention(), (batch, 8, 8, 16), "torchscript", 18)
    outcome = fuse_model(original)
    (fused,) = fused_attention_nodes(outcome.model)
    added = [n for n in outcome.model.graph.node if n.name.startswith(f"{fused.name}/") and n.op_type in ("Expand", "Reshape")]
    probe = onnx.ModelProto()
    probe.CopyFrom(outcome.model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None) for n in added)
    feeds = M.random_feeds(original, 0)
    got, *terms = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [outcome.model.graph.output[0].name, *(n.output[0] for n in added)], feeds)
    windows, heads, tokens = 4 * batch, 2, 16
    assert sorted(t.shape for t in terms)[-1] in ((windows, 1, tokens, tokens), (batch, windows // batch, 1, tokens, tokens))
    (want,) = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert all(t.size < windows * heads * tokens * tokens for t in terms)
    assert float(np.max(np.abs(want - got))) <= REL_TOL * float(np.max(np.abs(want)))
