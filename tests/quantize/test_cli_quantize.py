"""``attn-deploy quantize``: end to end, and bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.artifact.graph import IR_VERSION
from tests.conftest import RunCli


def _assert_input_error(run_cli: RunCli, tmp_path: Path, args: list[str], match: str) -> None:
    before = set(tmp_path.iterdir())
    run_cli("quantize", *args, "-o", str(tmp_path / "out.onnx"), "--report", str(tmp_path / "r.json")).assert_error(match)
    assert set(tmp_path.iterdir()) == before


def test_not_onnx(run_cli: RunCli, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("this is not a model\n")
    _assert_input_error(run_cli, tmp_path, [str(bogus)], "is not an ONNX model")


def test_missing_file(run_cli: RunCli, tmp_path: Path) -> None:
    _assert_input_error(run_cli, tmp_path, [str(tmp_path / "nope.onnx")], "no such file")


def test_nothing_to_quantize(run_cli: RunCli, tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w],
    )
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION), path)
    _assert_input_error(run_cli, tmp_path, [str(path)], "nothing to quantize")


def test_torch_needs_a_pytorch_model(run_cli: RunCli, tmp_path: Path, tiny_sagan: Path) -> None:
    _assert_input_error(run_cli, tmp_path, [str(tiny_sagan), "--torch"], "--torch needs a PyTorch MODEL")


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # torch.load of a quantized module
def test_zoo_model_end_to_end_with_report_and_torch(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "mha.onnx"
    code, stdout, stderr = run_cli("quantize", "zoo:mha-encoder", "-o", str(out), "--iterations", "1", "--report", str(tmp_path / "r.json"), "--torch")
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


def test_state_dict_model_with_arch_and_input_shape(run_cli: RunCli, tmp_path: Path) -> None:
    import torch

    from attn_deploy.zoo import get_entry

    weights = tmp_path / "sagan.pt"
    torch.save(get_entry("sagan-256").build().state_dict(), weights)
    out = tmp_path / "s.onnx"
    code, stdout, stderr = run_cli(
        "quantize", str(weights), "--arch", "zoo:sagan-256", "--input-shape", "1x256x8x8", "-o", str(out), "--iterations", "1", "--json",
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["parity"][0]["shape_ref"] == [1, 256, 8, 8] and report["parity"][0]["cosine"] > 0.999


def test_include_convs_quantizes_convs_with_a_warning(run_cli: RunCli, tmp_path: Path) -> None:
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
    code, stdout, stderr = run_cli("quantize", str(path), "-o", str(out), "--include-convs", "--iterations", "1", "--json")
    assert code == 0, stderr
    assert "ConvInteger is often slower" in stderr
    report = json.loads(stdout)
    assert report["nodes"]["quantized"] == ["conv3x3"] and report["parity"][0]["cosine"] > 0.99
    assert "ConvInteger" in {n.op_type for n in onnx.load(out).graph.node}


def test_full_range_turns_reduce_range_off(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from attn_deploy import api
    from attn_deploy.errors import InputError

    seen = []

    def fake_quantize(model: str, output: Path, options: object) -> None:
        seen.append(options)
        raise InputError("stopped here")

    monkeypatch.setattr(api, "quantize", fake_quantize)
    run_cli("quantize", "m.onnx", "-o", str(tmp_path / "q.onnx")).assert_error("stopped here")
    run_cli("quantize", "m.onnx", "-o", str(tmp_path / "q.onnx"), "--full-range").assert_error("stopped here")
    assert [o.reduce_range for o in seen] == [True, False]


def test_parity_inputs_as_check_makes_them(run_cli: RunCli, tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [w],
    )
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION), path)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.ones((3, 8), np.float32))

    def report(*args: str) -> dict[str, object]:
        code, _, stderr = run_cli("quantize", str(path), "-o", str(tmp_path / "out.onnx"), "--iterations", "1", "--report", str(tmp_path / "r.json"), *args)
        assert code == 0, stderr
        return json.loads((tmp_path / "r.json").read_text())  # type: ignore[no-any-return]

    skipped = report()
    assert skipped["parity"] is None and skipped["warnings"] == [
        "parity and latency skipped: input 'x' has dynamic dims ['batch', 8]; pass --input x:1x8"]
    assert report("--input", "x:2x8")["parity"]
    assert report("--data", str(data))["parity"]
    assert report("--input", "x:2x8", "--val-range", "0,1")["parity"]
    _assert_input_error(run_cli, tmp_path, [str(path), "--data", str(tmp_path / "none.npz")], "--data")
