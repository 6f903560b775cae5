"""TensorRT lowering: one choice per FusedAttention node, and every lowered model still computes the same."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from attn_deploy.api import as_artifact, to_fp16
from attn_deploy.artifact.graph import default_opset, fused_attention_nodes
from attn_deploy.check.stats import error_stats
from attn_deploy.lower.trt import (
    ATTENTION_OPSET,
    NodeLowering,
    lower_for_tensorrt,
    plan_lowering,
)
from tests.attention_graphs import encoder_block, example_feeds
from tests.conftest import run_ort


def convert_to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, object]:
    result = to_fp16(model)
    return result.artifact.proto, result.summary


def _lower(model: onnx.ModelProto, **kwargs: object) -> tuple[onnx.ModelProto, list[NodeLowering]]:
    result = lower_for_tensorrt(as_artifact(model), **kwargs)  # type: ignore[arg-type]
    return result.artifact.proto, result.summary


def _close(reference: onnx.ModelProto, candidate: onnx.ModelProto, tol: float) -> None:
    feeds = example_feeds(reference)
    for ref, out in zip(run_ort(reference, feeds), run_ort(candidate, feeds)):
        s = error_stats("out", ref, out)
        assert s.rel_to_max <= tol and s.cosine > 0.9999, s


@pytest.mark.parametrize(
    "dk,dv,fp16,plugin,choice",
    [
        (8, 8, False, False, "body"),  # float32: TensorRT refuses native attention
        (8, 16, True, False, "body"),  # dk != dv (SAGAN)
        (8, 8, True, False, "native-attention"),
        (8, 16, True, True, "plugin"),
        (8, 8, False, True, "plugin"),
    ],
)
def test_choice(dk: int, dv: int, fp16: bool, plugin: bool, choice: str) -> None:
    model = encoder_block(dk, dv)
    if fp16:
        model, _ = convert_to_fp16(model)
    (plan,) = plan_lowering(as_artifact(model), plugin=plugin)
    assert (plan.node, plan.choice, plan.dk, plan.dv) == ("attn0", choice, dk, dv)
    assert plan.dtype == ("float16" if fp16 else "float32")


def test_native_attention_replaces_the_node_at_opset_23() -> None:
    model, _ = convert_to_fp16(encoder_block(8, 8))
    lowered, _ = _lower(model, plugin=False)
    onnx.checker.check_model(lowered, full_check=True)
    assert default_opset(lowered) == ATTENTION_OPSET
    assert not fused_attention_nodes(lowered) and not lowered.functions
    (attn,) = [n for n in lowered.graph.node if n.op_type == "Attention"]
    assert attn.name == "attn0" and list(attn.input) == ["q", "k", "v"]
    assert onnx.helper.get_attribute_value(attn.attribute[0]) == pytest.approx(8**-0.5)
    _close(model, lowered, 1e-2)


def test_body_lowering_swaps_the_loop_for_one_matmul_softmax_matmul() -> None:
    model = encoder_block(8, 16)
    lowered, _ = _lower(model, plugin=False)
    onnx.checker.check_model(lowered, full_check=True)
    assert [n.name for n in fused_attention_nodes(lowered)] == ["attn0"]
    (body,) = lowered.functions
    assert "Loop" not in {n.op_type for n in body.node}
    assert [n.op_type for n in body.node if n.op_type in ("MatMul", "Softmax")] == ["MatMul", "Softmax", "MatMul"]
    _close(model, lowered, 1e-5)


def test_plugin_lowering_keeps_the_node_and_its_plugin_attributes() -> None:
    model = encoder_block(8, 16)
    lowered, plans = _lower(model, plugin=True)
    (node,) = fused_attention_nodes(lowered)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_namespace"] == b"attn_deploy" and attrs["plugin_version"] == b"1"
    assert plans[0].choice == "plugin"


def test_lowering_does_not_modify_its_input() -> None:
    model, _ = convert_to_fp16(encoder_block(8, 8))
    before = model.SerializeToString()
    _lower(model, plugin=False)
    assert model.SerializeToString() == before
    assert np.isfinite(run_ort(model, example_feeds(model))[0]).all()


@pytest.mark.parametrize("bias", [False, True])
def test_large_score_matrix_is_inlined_as_static_query_blocks(bias: bool) -> None:
    model = encoder_block(8, 16)
    if bias:  # a per-row additive bias [1, 1, Nq, Nk]: each block must get its own rows
        (node,) = fused_attention_nodes(model)
        values = np.random.default_rng(1).standard_normal((1, 1, 16, 16)).astype(np.float32)
        model.graph.initializer.append(onnx.numpy_helper.from_array(values, "rel_bias"))
        node.input.append("rel_bias")
        from attn_deploy.ops.bodies import attach_fused_attention_function

        attach_fused_attention_function(model)
    # 2 heads x 16 x 16 scores = 512 elements; a 200-element budget gives 16 / (200 // 32 = 6 rows) = 3 blocks
    lowered, (plan,) = _lower(model, plugin=False, budget=200)
    assert plan.choice == "body" and plan.query_blocks == 3 and "3 query blocks" in plan.reason
    onnx.checker.check_model(lowered, full_check=True)
    assert not fused_attention_nodes(lowered)
    assert sum(n.op_type == "Softmax" for n in lowered.graph.node) == 3 + 1  # the blocks + the model's own
    _close(model, lowered, 1e-5)


def test_fp16_stage_records_its_precision_and_tensorrt_reads_it() -> None:
    fp16 = to_fp16(encoder_block(8, 8)).artifact
    assert fp16.precision == "fp16" and fp16.manifest.stages[-1] == "fp16"
    result = lower_for_tensorrt(fp16, plugin=False)
    assert result.artifact.manifest.stages[-1] == "lower:tensorrt"
    assert result.summary[0].choice == "native-attention"
