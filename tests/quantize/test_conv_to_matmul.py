"""The float passes before quantization are exact rewrites: same ORT outputs within 1e-5."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.quantize.prepare import prepare
from tests.conftest import run_ort


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def _feeds(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def test_sagan_qkv_become_one_matmul_and_split(tiny_sagan: Path) -> None:
    original = onnx.load(tiny_sagan)
    prepared, summary = prepare(original)
    assert _ops(original)["Conv"] == 3
    ops = _ops(prepared)
    assert ops["Conv"] == 0 and ops["MatMul"] == 1 and ops["Split"] == 1 and ops["FusedAttention"] == 1
    assert summary.conv_matmuls and len(summary.conv_matmuls[0][1]) == 3
    weight = next(i for i in prepared.graph.initializer if i.name.endswith("_weight"))
    assert list(weight.dims) == [32, 4 + 4 + 32]  # [Cin, Cq + Ck + Cv]
    assert not {"query.weight", "key.weight", "value.weight"} & {i.name for i in prepared.graph.initializer}
    assert prepared.ir_version == IR_VERSION and [f.name for f in prepared.functions] == ["FusedAttention"]
    feeds = _feeds((1, 32, 6, 8))
    np.testing.assert_allclose(run_ort(prepared, feeds)[0], run_ort(original, feeds)[0], atol=1e-5, rtol=0)


def test_query_key_projections_can_get_their_own_matmul(tiny_sagan: Path) -> None:
    original = onnx.load(tiny_sagan)
    prepared, summary = prepare(original, separate_query_key=True)
    names = [m for m, _ in summary.conv_matmuls]
    assert names == ["attn_deploy_proj_0_query_key_matmul", "attn_deploy_proj_1_matmul"]
    assert [len(convs) for _, convs in summary.conv_matmuls] == [2, 1]
    ops = _ops(prepared)
    assert ops["MatMul"] == 2 and ops["Transpose"] == 2  # the tokens' transpose is shared; one more after attention
    feeds = _feeds((1, 32, 6, 8))
    np.testing.assert_allclose(run_ort(prepared, feeds)[0], run_ort(original, feeds)[0], atol=1e-5, rtol=0)


def test_dynamic_flatten_as_torchscript_writes_it(tiny_sagan_dynamic: Path) -> None:
    original = onnx.load(tiny_sagan_dynamic)
    assert _ops(original)["Shape"] >= 3  # the pattern under test is really there
    prepared, summary = prepare(original)
    assert summary.conv_matmuls and len(summary.conv_matmuls[0][1]) == 3 and _ops(prepared)["Conv"] == 0
    for shape in ((1, 32, 6, 8), (1, 32, 5, 7)):  # another size than the export's: still exact
        feeds = _feeds(shape)
        np.testing.assert_allclose(run_ort(prepared, feeds)[0], run_ort(original, feeds)[0], atol=1e-5, rtol=0)


def test_strip_layout_with_4d_reshape_is_exact(tiny_cross_region: Path) -> None:
    original = onnx.load(tiny_cross_region)
    prepared, summary = prepare(original)
    # theta, phi, g merge; the output conv reads attention output, not a token layout, and stays.
    assert summary.conv_matmuls and len(summary.conv_matmuls[0][1]) == 3
    assert _ops(prepared)["Conv"] == 1
    feeds = _feeds((1, 16, 4, 6))
    np.testing.assert_allclose(run_ort(prepared, feeds)[0], run_ort(original, feeds)[0], atol=1e-5, rtol=0)


def _conv_graph(kernel: int, reshape: list[int], perm: list[int], out_shape: list[int]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((6, 4, kernel, kernel)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array(reshape, np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["y"], name="transpose", perm=perm),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], [w, shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def test_single_conv_without_bias_and_graph_output() -> None:
    model = _conv_graph(1, [2, 6, 15], [0, 2, 1], [2, 15, 6])
    prepared, summary = prepare(model)
    assert summary.conv_matmuls and _ops(prepared) == Counter({"Reshape": 1, "Transpose": 1, "MatMul": 1, "Add": 1})
    assert [o.name for o in prepared.graph.output] == ["y"]
    x = {"x": np.random.default_rng(1).standard_normal((2, 4, 3, 5)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(prepared, x)[0], run_ort(model, x)[0], atol=1e-5, rtol=0)


def test_non_matching_convs_are_left_alone() -> None:
    # A 3x3 conv is not a projection; a reshape that merges batch into tokens is not a token layout.
    for model in (_conv_graph(3, [2, 6, 15], [0, 2, 1], [2, 15, 6]), _conv_graph(1, [1, 6, 30], [0, 2, 1], [1, 30, 6])):
        prepared, summary = prepare(model)
        assert not summary.conv_matmuls and _ops(prepared)["Conv"] == 1


def test_gemm_becomes_matmul_add() -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])], [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)
    prepared, summary = prepare(model)
    assert summary.gemm_matmuls == ["fc"] and _ops(prepared) == Counter({"MatMul": 1, "Add": 1})
    x = {"x": rng.standard_normal((4, 3)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(prepared, x)[0], run_ort(model, x)[0], atol=1e-5, rtol=0)
