"""build-trt falls back per node from native attention to the body when the builder rejects it,
says so, and writes --save-onnx even when the build fails (TensorRT-RTX, no GPU needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from attn_deploy.engine.build import _fallback_nodes
from attn_deploy.lower.trt import NodeLowering
from attn_deploy.ops.bodies import attach_fused_attention_function
from attn_deploy.ops.contract import OP_TYPE
from tests.attention_graphs import encoder_block
from tests.conftest import RunCli, run_ort

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed (pip install tensorrt-rtx-cu13; `make test` does)")

TOKENS, HEADS = 16, 2


def gathered_bias_block() -> onnx.ModelProto:
    """``encoder_block`` (dk == dv) plus a relative-position bias gathered from a table at run
    time, as Swin computes it: table[index].view(N, N, H).permute(2, 0, 1).unsqueeze(0)."""
    model = encoder_block(8, 8, tokens=TOKENS, heads=HEADS)
    rng = np.random.default_rng(1)
    i = np.arange(TOKENS)
    model.graph.initializer.extend([
        numpy_helper.from_array(rng.standard_normal((2 * TOKENS - 1, HEADS)).astype(np.float32), "rel_table"),
        numpy_helper.from_array((i[:, None] - i[None, :] + TOKENS - 1).reshape(-1).astype(np.int64), "rel_index"),
        numpy_helper.from_array(np.array([TOKENS, TOKENS, HEADS], np.int64), "rel_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "rel_axes"),
    ])
    bias = [
        helper.make_node("Gather", ["rel_table", "rel_index"], ["rel_rows"], axis=0),
        helper.make_node("Reshape", ["rel_rows", "rel_shape"], ["rel_nnh"]),
        helper.make_node("Transpose", ["rel_nnh"], ["rel_hnn"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["rel_hnn", "rel_axes"], ["rel_bias"]),
    ]
    nodes = list(model.graph.node)
    at = next(k for k, node in enumerate(nodes) if node.op_type == OP_TYPE)
    nodes[at].input.append("rel_bias")
    del model.graph.node[:]
    model.graph.node.extend([*nodes[:at], *bias, *nodes[at:]])
    attach_fused_attention_function(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_rejected_native_attention_falls_back_to_the_body(run_cli: RunCli, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src, engine, lowered = tmp_path / "m.onnx", tmp_path / "m.engine", tmp_path / "lowered.onnx"
    onnx.save(gathered_bias_block(), src)
    code, stdout, stderr = run_cli("build-trt", src, "-o", engine, "--runtime", "tensorrt-rtx", "--fp16", "--save-onnx", lowered)
    assert code == 0, stderr
    report = json.loads((tmp_path / "m.engine.json").read_text())
    (node,) = report["fused_attention"]
    assert (node["choice"], node["fell_back_from"], node["has_bias"]) == ("body", "native-attention", True)
    assert "not supported by a dedicated kernel" in node["reason"]
    assert report["fallbacks"] == [{"node": "attn0", "from": "native-attention", "to": "body", "why": node["reason"]}]
    assert "ATTENTION_INPUT" not in report["network_layers"]["summary"]["by_type"]
    assert engine.stat().st_size == report["engine_bytes"]
    assert "fell back from native attention to the body" in stderr and "attn0" in stderr
    assert "body (fallback)" in stdout
    assert "MyelinCheckException" not in stderr + capfd.readouterr().err  # the builder's own print to fd 2 is captured
    assert not any(n.op_type == "Attention" for n in onnx.load(lowered).graph.node)


def test_save_onnx_is_written_when_the_build_fails(run_cli: RunCli, tmp_path: Path) -> None:
    model = encoder_block()
    model.graph.node.append(helper.make_node("NonZero", ["out"], ["nz"], name="find_boxes"))
    model.graph.output.append(helper.make_tensor_value_info("nz", onnx.TensorProto.INT64, [2, "n"]))
    src, lowered = tmp_path / "m.onnx", tmp_path / "lowered.onnx"
    onnx.save(model, src)
    code, _, stderr = run_cli("build-trt", src, "-o", tmp_path / "m.engine", "--runtime", "tensorrt-rtx", "--save-onnx", lowered)
    assert code == 1 and "find_boxes" in stderr and str(lowered) in stderr.replace("\n", "")
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()
    written = onnx.load(lowered)  # the lowered model that was parsed, runnable in ONNX Runtime
    assert "find_boxes" in {n.name for n in written.graph.node}
    x = np.random.default_rng(0).standard_normal((1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(run_ort(written, {"x": x})[0], run_ort(model, {"x": x})[0], atol=1e-5)


def _plan(node: str, choice: str, has_bias: bool) -> NodeLowering:
    return NodeLowering(node, choice, "", 8, 8, "float16", has_bias)  # type: ignore[arg-type]


def test_fallback_is_per_node_biased_first() -> None:
    plans = [_plan("plain", "native-attention", False), _plan("biased", "native-attention", True), _plan("body", "body", True)]
    assert _fallback_nodes(plans) == ["biased"]  # the others keep their lowering
    assert _fallback_nodes([plans[0], plans[2]]) == ["plain"]  # no biased suspect: every native node
    assert _fallback_nodes([plans[2]]) == []  # nothing left to fall back: the error stands
