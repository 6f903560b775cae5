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
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [2, 2])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    return path


def test_detect_precision(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    assert detect_precision(_save(tmp_path, "a.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w])) == "fp32"
    w16 = numpy_helper.from_array(np.ones((2, 2), np.float16), "w")
    assert detect_precision(_save(tmp_path, "b.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w16], TensorProto.FLOAT16)) == "fp16"
    q = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]), helper.make_node("Identity", ["s"], ["y"])]
    assert detect_precision(_save(tmp_path, "c.onnx", q, [])) == "int8"
