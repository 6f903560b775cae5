"""The dynamo exporter's erf GELU, reordered so ONNX Runtime fuses it into one Gelu kernel: same results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.export.gelu_order import gelu_in_fusable_order
from tests.conftest import RunCli


def mlp() -> nn.Module:
    """A transformer MLP: Linear, GELU, Linear (what every ViT block has)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16)).eval()


def _dynamo_gelu(half: float = 0.5, half_first: bool = True) -> onnx.ModelProto:
    """``x * (0.5 * (1 + erf(x / √2)))`` as the dynamo exporter writes it."""
    scaled = ["half", "a"] if half_first else ["a", "half"]
    nodes = [helper.make_node("Div", ["x", "root2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", scaled, ["h"]), helper.make_node("Mul", ["x", "h"], ["y"])]
    constants = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("root2", np.sqrt(2.0)), ("one", 1.0), ("half", half))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def _ort_ops(model: onnx.ModelProto | Path, where: Path) -> list[str]:
    """The op types of the graph ONNX Runtime runs after its own optimisations."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(where)
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(where).graph.node]


def _run_unoptimised(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("half_first", [True, False])
def test_reordered_gelu_is_bit_identical_and_fuses(half_first: bool, tmp_path: Path) -> None:
    original = _dynamo_gelu(half_first=half_first)
    assert "Gelu" not in _ort_ops(original, tmp_path / "before.onnx")
    rewritten, count = gelu_in_fusable_order(original)
    assert count == 1
    onnx.checker.check_model(rewritten, full_check=True)
    x = np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32) * 4
    np.testing.assert_array_equal(_run_unoptimised(rewritten, x), _run_unoptimised(original, x))
    assert _ort_ops(rewritten, tmp_path / "after.onnx") == ["Gelu"]


def test_another_constant_is_not_gelu() -> None:
    model = _dynamo_gelu(half=0.4)
    assert gelu_in_fusable_order(model) == (model, 0)


def test_export_writes_gelu_that_onnx_runtime_fuses(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "mlp.onnx"
    code, _, stderr = run_cli("export", "tests.export.test_gelu_order:mlp", "--input-shape", "2x16", "--exporter", "dynamo", "-o", out)
    assert code == 0, stderr
    assert any("erf GELU" in note for note in json.loads(out.with_suffix(".json").read_text())["notes"])
    assert "Gelu" in _ort_ops(out, tmp_path / "optimised.onnx")
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = mlp()(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
