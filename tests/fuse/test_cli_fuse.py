"""``attn-deploy fuse``: summary, manifest, nothing-found behaviour, bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from typer.testing import CliRunner

from attn_deploy.cli import app
from attn_deploy.artifact.graph import fused_attention_nodes
from tests.fuse import models as M

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _written(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "in.onnx")


def _save(model: onnx.ModelProto, tmp_path: Path) -> Path:
    path = tmp_path / "in.onnx"
    onnx.save(model, path)
    return path


def test_fuse_writes_model_manifest_and_summary(tmp_path: Path) -> None:
    src = _save(M.export(M.TwoBlocks(), (1, 8, 16), "torchscript", 18), tmp_path)
    out = tmp_path / "out.onnx"
    code, stdout, stderr = _run("fuse", str(src), "-o", str(out), "--verbose")
    assert code == 0, stderr
    assert "FusedAttention_0" in stdout and "sdpa" in stdout
    assert "left alone" in stderr  # the classifier's softmax
    assert _written(tmp_path) == ["out.json", "out.onnx"]
    model = onnx.load(out)
    assert len(fused_attention_nodes(model)) == 2 and model.ir_version == 10
    manifest = json.loads((tmp_path / "out.json").read_text())
    assert manifest["exporter"] == "fuse" and len(manifest["fused_attention"]) == 2
    assert manifest["fused_attention"][0]["score_matrix_bytes"] == 2 * 8 * 8 * 4


def test_fuse_json(tmp_path: Path) -> None:
    src = _save(M.export(M.SaganVAt(), (1, 16, 3, 4), "torchscript", 17), tmp_path)
    code, stdout, _ = _run("fuse", str(src), "-o", str(tmp_path / "out.onnx"), "--json")
    assert code == 0
    report = json.loads(stdout)
    assert [r["pattern"].split(" (")[0] for r in report["fused"]] == ["sagan"]
    assert report["fused"][0]["Nq"] == 12


def test_nothing_found_writes_nothing_unless_asked(tmp_path: Path) -> None:
    src = _save(M.export(M.SaganVAt().q, (1, 16, 3, 4), "torchscript", 18), tmp_path)
    out = tmp_path / "out.onnx"
    code, _, stderr = _run("fuse", str(src), "-o", str(out))
    assert code == 0 and "no attention found" in stderr
    assert _written(tmp_path) == []
    code, _, stderr = _run("fuse", str(src), "-o", str(out), "--always-write")
    assert code == 0 and "no attention found" in stderr
    assert _written(tmp_path) == ["out.json", "out.onnx"]


def _assert_input_error(tmp_path: Path, src: Path, match: str, out_name: str = "out.onnx") -> None:
    code, _, stderr = _run("fuse", str(src), "-o", str(tmp_path / out_name))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], stderr
    assert [p for p in _written(tmp_path) if p != src.name] == []


def test_not_onnx(tmp_path: Path) -> None:
    src = tmp_path / "in.onnx"
    src.write_bytes(b"this is not a protobuf \x00\xff")
    _assert_input_error(tmp_path, src, "is not an ONNX model")


def test_missing_file(tmp_path: Path) -> None:
    _assert_input_error(tmp_path, tmp_path / "nope.onnx", "no such file")


def test_graph_that_does_not_validate(tmp_path: Path) -> None:
    node = helper.make_node("MatMul", ["x", "undefined"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    _assert_input_error(tmp_path, _save(model, tmp_path), "does not validate")


def test_output_must_be_onnx(tmp_path: Path) -> None:
    src = _save(M.export(M.SaganVAt(), (1, 16, 3, 4), "torchscript", 18), tmp_path)
    _assert_input_error(tmp_path, src, "must end in .onnx", out_name="out.txt")


def test_export_no_fuse_flag(tmp_path: Path) -> None:
    out = tmp_path / "plain.onnx"
    code, _, stderr = _run("export", "zoo:sagan-256", "--input-shape", "1x256x4x4", "--no-fuse", "-o", str(out))
    assert code == 0, stderr
    model = onnx.load(out)
    assert fused_attention_nodes(model) == [] and model.functions == []
    assert [n.op_type for n in model.graph.node].count("Softmax") == 1
