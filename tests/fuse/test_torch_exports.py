"""Each pattern family as both torch.onnx exporters emit it at opsets 17, 18, 20 (and 23):
``fuse`` finds exactly the attention blocks, and ONNX Runtime agrees with the original."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.fuse import fuse_model
from tests.fuse import models as M

REL_TOL = 1e-5
OPSETS = (17, 18, 20)
EXPORTERS = ("dynamo", "torchscript")

# name -> (module factory, input shape, attention blocks, expected pattern prefix)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int, str]] = {
    "sagan-vat": (M.SaganVAt, (1, 16, 3, 4), 1, "sagan (V·Aᵀ"),
    "sagan-avt": (M.SaganAVt, (1, 16, 3, 4), 1, "attention rank-3"),
    "hand-written": (M.HandWritten, (1, 8, 16), 1, "sdpa"),
    "sdpa": (M.Sdpa, (1, 8, 16), 1, "sdpa"),
    "sdpa-float-mask": (lambda: M.Sdpa("float"), (1, 8, 16), 1, "sdpa"),
    "sdpa-bool-mask": (lambda: M.Sdpa("bool"), (1, 8, 16), 1, "sdpa"),
    "sdpa-causal": (lambda: M.Sdpa("causal"), (1, 8, 16), 1, "sdpa"),
    "mha": (M.Mha, (1, 8, 16), 1, ""),
    "mha-need-weights": (lambda: M.Mha(need_weights=True), (1, 8, 16), 1, "attention rank-3"),
    "two-blocks": (M.TwoBlocks, (1, 8, 16), 2, "sdpa"),
}


def _check(name: str, exporter: str, opset: int, prefix: str | None = None) -> list[dict]:
    factory, shape, blocks, default_prefix = CASES[name]
    prefix = default_prefix if prefix is None else prefix
    original = M.export(factory(), shape, exporter, opset)
    outcome = fuse_model(original)
    assert len(outcome.fused) == blocks, outcome.near_misses
    assert len(fused_attention_nodes(outcome.model)) == blocks
    assert all(r["pattern"].startswith(prefix) for r in outcome.fused), [r["pattern"] for r in outcome.fused]
    assert not any(n.op_type == "Softmax" for n in outcome.model.graph.node if name != "two-blocks")
    assert M.max_rel_error(original, outcome.model, M.random_feeds(original)) <= REL_TOL
    return outcome.fused


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ["sagan-vat", "sagan-avt", "hand-written", "sdpa-bool-mask", "mha-need-weights"])
def test_families_at_every_opset(name: str, exporter: str, opset: int) -> None:
    _check(name, exporter, opset)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ["sdpa", "sdpa-float-mask", "sdpa-causal", "mha", "two-blocks"])
def test_more_variants_at_opset_18(name: str, exporter: str) -> None:
    _check(name, exporter, 18)


@pytest.mark.parametrize("name", ["sdpa", "sdpa-float-mask", "sdpa-bool-mask", "mha"])
def test_opset_23_attention_op(name: str) -> None:
    """At opset 23 the dynamo exporter emits the ONNX ``Attention`` op; TorchScript still decomposes."""
    _check(name, "dynamo", 23, prefix="onnx Attention")
    _check(name, "torchscript", 23)


def test_summary_records_shapes_and_scale() -> None:
    (record,) = _check("sdpa-float-mask", "torchscript", 18)
    assert (record["B"], record["H"], record["Nq"], record["Nk"], record["dk"], record["dv"]) == (1, 2, 8, 8, 8, 8)
    assert record["scale"] == pytest.approx(8**-0.5, rel=1e-6)
    assert record["has_bias"] is True
    assert record["score_matrix_bytes"] == 1 * 2 * 8 * 8 * 4
    (sagan,) = _check("sagan-vat", "dynamo", 18)
    assert (sagan["Nq"], sagan["dk"], sagan["dv"]) == (12, 2, 16)
    assert sagan["scale"] == pytest.approx(1 / 1.7, rel=1e-6)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_batch_and_tokens(exporter: str) -> None:
    """Dynamic B and N: the fused model matches at sizes other than the exported one."""
    import io
    import warnings

    import numpy as np
    import onnx
    import torch

    from tests.conftest import run_ort

    model = M.HandWritten().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO}
            original = torch.onnx.export(model, (torch.randn(2, 8, 16),), dynamo=True, opset_version=18, input_names=["x"], dynamic_shapes=(dims,), verbose=False).model_proto
        else:
            buffer = io.BytesIO()
            torch.onnx.export(model, (torch.randn(2, 8, 16),), buffer, dynamo=False, opset_version=18, input_names=["x"], dynamic_axes={"x": {0: "b", 1: "n"}})
            original = onnx.load_from_string(buffer.getvalue())
    outcome = fuse_model(original)
    assert len(outcome.fused) == 1
    for b, n in ((1, 5), (3, 11)):
        feeds = {"x": np.random.default_rng(n).standard_normal((b, n, 16)).astype(np.float32)}
        (want,), (got,) = run_ort(original, feeds), run_ort(outcome.model, feeds)
        assert np.max(np.abs(want - got)) <= REL_TOL * np.max(np.abs(want))
