"""``attn-deploy quantize``: end to end, and bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from attn_deploy.cli import app
from attn_deploy.artifact.graph import IR_VERSION

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _assert_input_error(tmp_path: Path, args: list[str], match: str) -> None:
    before = set(tmp_path.iterdir())
    code, _, stderr = _run("quantize", *args, "-o", str(tmp_path / "out.onnx"), "--report", str(tmp_path / "r.json"))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], stderr
    assert set(tmp_path.iterdir()) == before


def test_not_onnx(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("this is not a model\n")
    _assert_input_error(tmp_path, [str(bogus)], "is not an ONNX model")


def test_missing_file(tmp_path: Path) -> None:
    _assert_input_error(tmp_path, [str(tmp_path / "nope.onnx")], "no such file")


def test_nothing_to_quantize(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w],
    )
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION), path)
    _assert_input_error(tmp_path, [str(path)], "nothing to quantize")


def test_torch_needs_a_pytorch_model(tmp_path: Path, tiny_sagan: Path) -> None:
    _assert_input_error(tmp_path, [str(tiny_sagan), "--torch"], "--torch needs a PyTorch MODEL")


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # torch.load of a quantized module
def test_zoo_model_end_to_end_with_report_and_torch(tmp_path: Path) -> None:
    out = tmp_path / "mha.onnx"
    code, stdout, stderr = _run("quantize", "zoo:mha-encoder", "-o", str(out), "--iterations", "1", "--report", str(tmp_path / "r.json"), "--torch")
    assert code == 0, stderr
    report = json.loads((tmp_path / "r.json").read_text())
    # 2 blocks x (in-projection, out-projection Gemm, 2 MLP layers)
    assert len(report["nodes"]["quantized"]) == 8 and len(report["preparation"]["gemms_to_matmul"]) == 2
    assert {s["op_type"] for s in report["nodes"]["skipped"]} == {"FusedAttention", "LayerNormalization"}
    assert report["parity"][0]["cosine"] > 0.99
    assert "cannot be exported to ONNX" in stderr and out.with_suffix(".torch.pt").exists()
    assert "quantized 8 node(s)" in stdout
    import torch

    import attn_deploy.ops.torch_op  # noqa: F401 - registers the op the pickled module calls

    module = torch.load(out.with_suffix(".torch.pt"), weights_only=False)
    with torch.no_grad():
        assert module(torch.randn(1, 196, 256)).shape == (1, 196, 256)


def test_state_dict_model_with_arch_and_input_shape(tmp_path: Path) -> None:
    import torch

    from attn_deploy.zoo import get_entry

    weights = tmp_path / "sagan.pt"
    torch.save(get_entry("sagan-256").build().state_dict(), weights)
    out = tmp_path / "s.onnx"
    code, stdout, stderr = _run(
        "quantize", str(weights), "--arch", "zoo:sagan-256", "--input-shape", "1x256x8x8", "-o", str(out), "--iterations", "1", "--json",
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["parity"][0]["shape_ref"] == [1, 256, 8, 8] and report["parity"][0]["cosine"] > 0.999


def test_include_convs_quantizes_convs_with_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv3x3", pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w],
    )
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION), path)
    out = tmp_path / "q.onnx"
    code, stdout, stderr = _run("quantize", str(path), "-o", str(out), "--include-convs", "--iterations", "1", "--json")
    assert code == 0, stderr
    assert "ConvInteger is often slower" in stderr
    report = json.loads(stdout)
    assert report["nodes"]["quantized"] == ["conv3x3"] and report["parity"][0]["cosine"] > 0.99
    assert "ConvInteger" in {n.op_type for n in onnx.load(out).graph.node}
