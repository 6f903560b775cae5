"""The FunctionProto bodies in ONNX Runtime: exact against the reference, static and dynamic shapes.

The exported body takes the plain path when the score matrix fits its budget (ONNX Runtime then
optimises it as it does a plain export's attention) and the Loop otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from attn_deploy.ops import reference_attention
from attn_deploy.ops.bodies import exported_body, looped_body
from attn_deploy.ops.contract import DOMAIN, OP_TYPE
from tests.conftest import run_ort


def _model(with_bias: bool, dims: dict[str, list[int | str]], budget: int, elem: int = TensorProto.FLOAT,
           body: Callable[..., onnx.FunctionProto] = looped_body) -> onnx.ModelProto:
    names = ["q", "k", "v"] + (["bias"] if with_bias else [])
    node = helper.make_node(OP_TYPE, names, ["o"], domain=DOMAIN, scale=0.3, plugin_namespace=DOMAIN, plugin_version="1")
    inputs = [helper.make_tensor_value_info(n, elem, dims[n]) for n in names]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("o", elem, dims["o"])])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)],
        functions=[body(18, with_bias=with_bias, budget_elements=budget)],
        ir_version=10,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


DYNAMIC = {"q": ["B", "H", "Nq", "dk"], "k": ["B", "H", "Nk", "dk"], "v": ["B", "H", "Nk", "dv"], "bias": ["X", "Y"], "o": ["B", "H", "Nq", "dv"]}


@pytest.mark.parametrize("nq", [1, 7, 64, 100])
@pytest.mark.parametrize("budget", [2 * 3 * 70 * 7, 1 << 24])  # many padded blocks / one block
def test_body_matches_reference_dynamic_nq(nq: int, budget: int) -> None:
    model = _model(False, DYNAMIC, budget)
    q, k, v = torch.randn(2, 3, nq, 8), torch.randn(2, 3, 70, 8), torch.randn(2, 3, 70, 16)
    (got,) = run_ort(model, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})
    want = reference_attention(q, k, v, scale=0.3).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias_shape", [(100, 70), (1, 70), (2, 3, 100, 70), (2, 1, 1, 70)])
def test_body_with_bias(bias_shape: tuple[int, ...]) -> None:
    dims = dict(DYNAMIC, bias=[f"b{i}" for i in range(len(bias_shape))])
    model = _model(True, dims, budget=2 * 3 * 70 * 9)
    q, k, v = torch.randn(2, 3, 100, 8), torch.randn(2, 3, 70, 8), torch.randn(2, 3, 70, 16)
    bias = torch.randn(bias_shape)
    (got,) = run_ort(model, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "bias": bias.numpy()})
    np.testing.assert_allclose(got, reference_attention(q, k, v, bias, scale=0.3).numpy(), rtol=1e-5, atol=1e-6)


def test_body_static_shapes_sagan_like() -> None:
    dims = {"q": [1, 1, 300, 4], "k": [1, 1, 300, 4], "v": [1, 1, 300, 32], "o": [1, 1, 300, 32]}
    model = _model(False, dims, budget=300 * 64)
    q, k, v = torch.randn(1, 1, 300, 4), torch.randn(1, 1, 300, 4), torch.randn(1, 1, 300, 32)
    (got,) = run_ort(model, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})
    np.testing.assert_allclose(got, reference_attention(q, k, v, scale=0.3).numpy(), rtol=1e-5, atol=1e-6)


def test_body_fp16_computes_in_fp32() -> None:
    model = _model(False, DYNAMIC, 1 << 24, elem=TensorProto.FLOAT16)
    q, k, v = torch.randn(1, 2, 50, 16), torch.randn(1, 2, 50, 16), torch.randn(1, 2, 50, 16)
    (got,) = run_ort(model, {"q": q.half().numpy(), "k": k.half().numpy(), "v": v.half().numpy()})
    assert got.dtype == np.float16
    want = reference_attention(q.half().float(), k.half().float(), v.half().float(), scale=0.3)
    np.testing.assert_allclose(got.astype(np.float32), want.numpy(), rtol=1e-2, atol=1e-3)


def test_body_needs_castlike_opset() -> None:
    with pytest.raises(ValueError, match="opset >= 15"):
        looped_body(13)


def _optimized_ops(model: onnx.ModelProto, tmp_path: Path) -> set[str]:
    """Op types of the graph ONNX Runtime runs (functions inlined, If branches folded, fusions applied)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}


@pytest.mark.parametrize("budget", [2 * 3 * 37 * 70, 2 * 3 * 70 * 7])  # fits exactly / many blocks
@pytest.mark.parametrize("with_bias", [False, True])
def test_exported_body_matches_reference_on_both_paths(budget: int, with_bias: bool) -> None:
    dims = dict(DYNAMIC, bias=["X", "Y"])
    model = _model(with_bias, dims, budget, body=exported_body)
    q, k, v = torch.randn(2, 3, 37, 8), torch.randn(2, 3, 70, 8), torch.randn(2, 3, 70, 16)
    bias = torch.randn(37, 70)
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()} | ({"bias": bias.numpy()} if with_bias else {})
    (got,) = run_ort(model, feeds)
    want = reference_attention(q, k, v, bias if with_bias else None, scale=0.3).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_bias", [False, True])
def test_exported_body_is_the_plain_product_when_the_scores_fit(with_bias: bool, tmp_path: Path) -> None:
    """Static shapes: ORT folds the If; MatMul-Softmax-MatMul when the scores fit (no Loop, no Pad), else the Loop."""
    dims: dict[str, list[int | str]] = {"q": [1, 2, 300, 4], "k": [1, 2, 300, 4], "v": [1, 2, 300, 32],
                                        "bias": [300, 300], "o": [1, 2, 300, 32]}
    q, k, v, bias = torch.randn(1, 2, 300, 4), torch.randn(1, 2, 300, 4), torch.randn(1, 2, 300, 32), torch.randn(300, 300)
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()} | ({"bias": bias.numpy()} if with_bias else {})
    want = reference_attention(q, k, v, bias if with_bias else None, scale=0.3).numpy()
    for budget, path in ((2 * 300 * 300, "plain"), (2 * 300 * 300 - 1, "looped")):
        model = _model(with_bias, dims, budget, body=exported_body)
        ops = _optimized_ops(model, tmp_path)
        assert "If" not in ops
        assert ("Loop" in ops) == (path == "looped") and ("Softmax" in ops) == (path == "plain")
        np.testing.assert_allclose(run_ort(model, feeds)[0], want, rtol=1e-5, atol=1e-6)


def test_exported_body_fp16_computes_in_fp32() -> None:
    model = _model(False, DYNAMIC, 1 << 24, elem=TensorProto.FLOAT16, body=exported_body)
    q, k, v = torch.randn(1, 2, 50, 16), torch.randn(1, 2, 50, 16), torch.randn(1, 2, 50, 16)
    (got,) = run_ort(model, {"q": q.half().numpy(), "k": k.half().numpy(), "v": v.half().numpy()})
    assert got.dtype == np.float16
    want = reference_attention(q.half().float(), k.half().float(), v.half().float(), scale=0.3)
    np.testing.assert_allclose(got.astype(np.float32), want.numpy(), rtol=1e-2, atol=1e-3)
