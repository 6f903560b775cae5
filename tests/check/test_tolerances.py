from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.check.tolerances import (
    PRESETS,
    ToleranceOverrides,
    detect_precision,
    parse_per_output,
)
from attn_deploy.errors import InputError


def test_parse_per_output() -> None:
    assert parse_per_output(["1e-3", "boxes=0.5"], "--atol") == {"": 1e-3, "boxes": 0.5}
    assert parse_per_output(["scores=median"], "--check-error-stat", str) == {"scores": "median"}
    with pytest.raises(InputError):
        parse_per_output(["boxes=big"], "--atol")
    with pytest.raises(InputError):
        parse_per_output(["p99"], "--check-error-stat", str)


def test_overrides_fall_back_to_default_then_preset() -> None:
    o = ToleranceOverrides(atol={"": 1e-3, "boxes": 0.5}, rtol={}, check_error_stat={"scores": "mean"}, min_cosine=0.9)
    fp32 = PRESETS["fp32"]
    assert o.for_output("boxes", fp32).atol == 0.5
    assert o.for_output("other", fp32).atol == 1e-3
    assert o.for_output("other", fp32).rtol == fp32.rtol
    assert o.for_output("scores", fp32).check_error_stat == "mean"
    assert o.for_output("other", fp32).min_cosine == 0.9


def _save(tmp_path: Path, name: str, nodes: list, inits: list, elem: int = TensorProto.FLOAT) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [2, 2])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    return path


def test_a_file_never_sets_its_own_tolerance(tmp_path: Path) -> None:
    """Graphs that look fp16 or int8 get the strict preset unless a stage's manifest says so."""
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    assert detect_precision(_save(tmp_path, "a.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w])) == "fp32"
    w16 = numpy_helper.from_array(np.ones((2, 2), np.float16), "w")
    fp16 = _save(tmp_path, "b.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w16], TensorProto.FLOAT16)
    assert detect_precision(fp16) == "fp32"
    q = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]), helper.make_node("Identity", ["s"], ["y"])]
    assert detect_precision(_save(tmp_path, "c.onnx", q, [])) == "fp32"


def test_precision_comes_from_a_matching_manifest_only(tmp_path: Path) -> None:
    from attn_deploy.artifact.artifact import Artifact

    w16 = numpy_helper.from_array(np.ones((2, 2), np.float16), "w")
    model = onnx.load(_save(tmp_path, "m.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w16], TensorProto.FLOAT16))
    path, _ = Artifact.describe(model, source="test", exporter="test", stages=["fp16"], precision="fp16").save(tmp_path / "m.onnx")
    assert detect_precision(path) == "fp16"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float16), "decoy"))
    onnx.save(model, path)  # changed after its manifest was written: the manifest no longer counts
    assert detect_precision(path) == "fp32"
