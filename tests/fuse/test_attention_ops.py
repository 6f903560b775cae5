"""Whole attention ops: ONNX ``Attention`` (opset 23, 3-D with heads) and ``com.microsoft.MultiHeadAttention``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.fuse import fuse_model
from tests.fuse.models import max_rel_error, random_feeds

FLOAT = TensorProto.FLOAT


def _model(node: onnx.NodeProto, inputs: list[tuple[str, list[int]]], out_shape: list[int], initializers: list[onnx.TensorProto], opsets: list[tuple[str, int]]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", FLOAT, out_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def _keep_mask(nq: int, nk: int) -> np.ndarray:
    keep = np.random.default_rng(3).random((nq, nk)) > 0.4
    keep[:, 0] = True
    return keep


@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_onnx_attention_3d_with_heads(mask: str | None) -> None:
    inits, inputs = [], ["q", "k", "v"]
    if mask == "bool":
        inits.append(numpy_helper.from_array(_keep_mask(5, 6), "mask"))
        inputs.append("mask")
    elif mask == "float":
        inits.append(numpy_helper.from_array(np.random.default_rng(4).standard_normal((1, 2, 5, 6)).astype(np.float32), "mask"))
        inputs.append("mask")
    node = helper.make_node("Attention", inputs, ["y"], q_num_heads=2, kv_num_heads=2)
    model = _model(node, [("q", [1, 5, 8]), ("k", [1, 6, 8]), ("v", [1, 6, 8])], [1, 5, 8], inits, [("", 23)])
    outcome = fuse_model(model)
    assert [r["pattern"].split(" (")[0] for r in outcome.fused] == ["onnx Attention"]
    (r,) = outcome.fused
    assert (r["H"], r["Nq"], r["Nk"], r["dk"], r["scale"]) == (2, 5, 6, 4, pytest.approx(0.5))
    assert not any(n.op_type == "Attention" for n in outcome.model.graph.node)
    assert max_rel_error(model, outcome.model, random_feeds(model)) <= 1e-5


def test_onnx_attention_causal_is_left_alone() -> None:
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], is_causal=1)
    model = _model(node, [("q", [1, 2, 5, 4]), ("k", [1, 2, 5, 4]), ("v", [1, 2, 5, 4])], [1, 2, 5, 4], [], [("", 23)])
    outcome = fuse_model(model)
    assert not outcome.fused
    assert "is_causal" in outcome.near_misses[0]["reason"]


@pytest.mark.parametrize("with_bias", [False, True])
def test_ms_multihead_attention(with_bias: bool) -> None:
    inputs = ["q", "k", "v"]
    inits = []
    if with_bias:
        inputs += ["", "", "attn_bias"]
        inits.append(numpy_helper.from_array(np.random.default_rng(5).standard_normal((1, 2, 5, 6)).astype(np.float32), "attn_bias"))
    node = helper.make_node("MultiHeadAttention", inputs, ["y"], domain="com.microsoft", num_heads=2, scale=0.3)
    model = _model(node, [("q", [1, 5, 16]), ("k", [1, 6, 16]), ("v", [1, 6, 16])], [1, 5, 16], inits, [("", 18), ("com.microsoft", 1)])
    outcome = fuse_model(model)
    assert len(outcome.fused) == 1 and outcome.fused[0]["pattern"].startswith("com.microsoft.MultiHeadAttention")
    assert outcome.fused[0]["scale"] == pytest.approx(0.3)
    assert outcome.fused[0]["has_bias"] is with_bias
    assert max_rel_error(model, outcome.model, random_feeds(model)) <= 1e-5


def test_ms_multihead_attention_with_key_padding_mask_is_left_alone() -> None:
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "kpm"], ["y"], domain="com.microsoft", num_heads=2)
    model = helper.make_model(
        helper.make_graph(
            [node], "g",
            [helper.make_tensor_value_info(n, FLOAT, [1, 5, 16]) for n in "qkv"] + [helper.make_tensor_value_info("kpm", TensorProto.INT32, [1, 5])],
            [helper.make_tensor_value_info("y", FLOAT, [1, 5, 16])],
        ),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)],
    )
    model.ir_version = 10
    outcome = fuse_model(model)
    assert not outcome.fused and "key_padding_mask" in outcome.near_misses[0]["reason"]
