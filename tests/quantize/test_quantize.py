"""quantize_dynamic on prepared models: what is quantized, the FusedAttention function, parity."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from attn_deploy.api import load, quantize_model, quantize_stage
from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.check.stats import error_stats
from attn_deploy.quantize import QuantizeOptions
from attn_deploy.quantize.attention import use_int8_attention_body
from attn_deploy.quantize.torch_side import PointwiseLinear, quantize_torch
from attn_deploy.zoo import SelfAttention
from attn_deploy.zoo.registry import seed_zero_parameters
from tests.conftest import run_ort


def _branch_cosine(model_a: onnx.ModelProto, model_b: onnx.ModelProto, shape: tuple[int, ...]) -> float:
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    a, b = run_ort(model_a, {"input": x})[0], run_ort(model_b, {"input": x})[0]
    return error_stats("branch", a - x, b - x).cosine


def test_int8_qk_no_lower_makes_qkv_one_matmul_integer_and_keeps_function(tiny_sagan: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = quantize_model(str(tiny_sagan), out, QuantizeOptions(iterations=1, lower=False, float_qk=False))
    model = onnx.load(out)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMulInteger"] == 1 and ops["DynamicQuantizeLinear"] == 1 and ops["MatMul"] == 0
    assert ops["Conv"] == 0 and ops["FusedAttention"] == 1
    assert model.ir_version == IR_VERSION
    assert [(f.domain, f.name) for f in model.functions] == [("attn_deploy", "FusedAttention")]
    assert {i.domain: i.version for i in model.opset_import}["attn_deploy"] == 1
    report = result.report
    assert report["nodes"]["quantized"] == ["attn_deploy_proj_0_matmul"]
    assert [s["op_type"] for s in report["nodes"]["skipped"]] == ["FusedAttention"]
    assert report["size_bytes"]["int8"] < report["size_bytes"]["float"]
    assert report["latency"]["float_ms"] > 0 and report["latency"]["int8_ms"] > 0
    assert report["parity"][0]["cosine"] > 0.99
    assert _branch_cosine(onnx.load(tiny_sagan), model, (1, 32, 6, 8)) > 0.99
    assert report["attention_lowering"] == [] and "float_lowered_ms" not in report["latency"]


def test_default_lowers_attention_for_onnx_runtime(tiny_sagan: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    root = logging.getLogger()
    level = root.level
    result = quantize_model(str(tiny_sagan), out, QuantizeOptions(iterations=2))
    assert root.level == level and not root.filters  # the quantizer's logging was scoped to the call
    model = onnx.load(out)
    manifest = load(out).manifest
    assert manifest.precision == "int8" and manifest.stages[-1] == "quantize"
    ops = Counter((n.domain, n.op_type) for n in model.graph.node)
    assert ops[("", "MatMulInteger")] == 1 and ops[("attn_deploy", "FusedAttention")] == 0
    [choice] = result.report["attention_lowering"]
    assert choice["op_type"] in {n.op_type for n in model.graph.node}
    latency = result.report["latency"]
    assert latency["float_lowered_ms"] > 0 and latency["speedup_vs_float_lowered"] > 0
    assert _branch_cosine(onnx.load(tiny_sagan), model, (1, 32, 6, 8)) > 0.99


def test_quantize_attention_keeps_its_int8_body_unlowered(tiny_sagan: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = quantize_model(str(tiny_sagan), out, QuantizeOptions(iterations=0, quantize_attention=True))
    assert result.report["attention_lowering"] == []
    assert [n.op_type for n in onnx.load(out).graph.node if n.domain == "attn_deploy"] == ["FusedAttention"]


def test_float_qk_by_default_quantizes_only_the_value_projection(tiny_sagan: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = quantize_model(str(tiny_sagan), out, QuantizeOptions(iterations=0, lower=False))
    model = onnx.load(out)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMulInteger"] == 1 and ops["MatMul"] == 1
    assert result.report["nodes"]["quantized"] == ["attn_deploy_proj_1_matmul"]
    assert {s["name"]: s["op_type"] for s in result.report["nodes"]["skipped"]} == {
        "attn_deploy_proj_0_query_key_matmul": "MatMul", "node_fused_attention": "FusedAttention",
    }
    assert _branch_cosine(onnx.load(tiny_sagan), model, (1, 32, 6, 8)) > 0.999


def test_exclude_by_op_type_leaves_nothing_but_attention(tiny_sagan: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = quantize_model(str(tiny_sagan), out, QuantizeOptions(exclude=("MatMul",), quantize_attention=True, iterations=0))
    assert result.report["nodes"]["quantized"] == []
    assert "excluded by --exclude MatMul" in {s["why"] for s in result.report["nodes"]["skipped"]}
    function = onnx.load(out).functions[0]
    assert "MatMulInteger" in {n.op_type for g in _loop_bodies(function) for n in g.node}


def _loop_bodies(function: onnx.FunctionProto) -> list[onnx.GraphProto]:
    return [a.g for n in function.node if n.op_type == "Loop" for a in n.attribute if a.name == "body"]


def test_int8_attention_body_is_close_to_float(tiny_sagan: Path) -> None:
    original = onnx.load(tiny_sagan)
    variant = onnx.load(tiny_sagan)
    assert use_int8_attention_body(variant)
    assert "Softmax" not in {n.op_type for g in _loop_bodies(variant.functions[0]) for n in g.node}
    assert _branch_cosine(original, variant, (1, 32, 6, 8)) > 0.999


def test_per_tensor_uint8_weights(tiny_sagan: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    quantize_model(str(tiny_sagan), out, QuantizeOptions(per_channel=False, weight_type="uint8", iterations=0))
    model = onnx.load(out)
    weights = [i for i in model.graph.initializer if i.name.endswith("_quantized")]
    assert weights and all(w.data_type == onnx.TensorProto.UINT8 for w in weights)
    scales = [i for i in model.graph.initializer if i.name.endswith("weight_scale")]
    assert scales and all(int(np.prod(s.dims)) == 1 for s in scales)


def test_torch_side_converts_pointwise_convs_and_quantizes() -> None:
    torch.manual_seed(0)
    module = SelfAttention(32).eval()
    seed_zero_parameters(module)
    quantized, converted, linears = quantize_torch(module)
    assert converted == 3 and linears == 3
    assert not any(isinstance(m, torch.nn.Conv2d) for m in quantized.modules())
    assert any(isinstance(m, PointwiseLinear) for m in quantized.modules())
    x = torch.randn(1, 32, 6, 8)
    with torch.no_grad():
        ref, got = module(x) - x, quantized(x) - x
    assert error_stats("branch", ref.numpy(), got.numpy()).cosine > 0.99


def test_quantize_stage_returns_an_int8_artifact_and_writes_nothing(tiny_sagan: Path) -> None:
    before = set(tiny_sagan.parent.iterdir())
    result = quantize_stage(load(tiny_sagan), QuantizeOptions(lower=False))
    assert result.artifact.precision == "int8" and result.artifact.path is None
    assert result.summary.nodes["quantized"] == ["attn_deploy_proj_1_matmul"]
    assert result.summary.preparation.conv_matmuls and not result.summary.lowering
    assert set(tiny_sagan.parent.iterdir()) == before


def test_quantize_package_imports_no_check_bench_or_runtime() -> None:
    code = (
        "import sys, attn_deploy.quantize, attn_deploy.quantize.pipeline; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['attn_deploy', 'check'], ['attn_deploy', 'bench'], ['attn_deploy', 'runtime'])))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
