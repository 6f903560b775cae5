"""fp16 conversion: the listed ops stay float32, the rest is float16, and ORT still matches fp32."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.check.stats import error_stats
from attn_deploy.export import ExportOptions, export_model
from attn_deploy.export.loading import LoadedModel
from attn_deploy.lower.fp16 import KEEP_FP32, convert_to_fp16
from attn_deploy.zoo import SelfAttention
from tests.attention_graphs import encoder_block, example_feeds
from tests.conftest import run_ort

#: The fp16 preset of `check` (max abs error over max |reference|, cosine).
FP16_REL_TO_MAX = 1e-2
FP16_COSINE = 0.999


def _types(model: onnx.ModelProto) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.value_info, *g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def _assert_matches(reference: onnx.ModelProto, candidate: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    names = [o.name for o in reference.graph.output]
    for name, ref, out in zip(names, run_ort(reference, feeds), run_ort(candidate, feeds)):
        assert out.dtype == np.float32, name
        s = error_stats(name, ref, out)
        assert s.rel_to_max <= FP16_REL_TO_MAX and s.cosine >= FP16_COSINE, s
        assert s.max_abs > 0, f"{name}: bit-identical to fp32, so nothing ran in float16"


def test_listed_ops_stay_float32_and_the_rest_is_float16() -> None:
    converted, summary = convert_to_fp16(encoder_block(8, 16))
    onnx.checker.check_model(converted, full_check=True)
    types = _types(converted)
    kept = {"LayerNormalization", "BatchNormalization", "ReduceMean", "Softmax"}
    assert kept <= KEEP_FP32
    seen = set()
    for node in converted.graph.node:
        floats = [types[n] for n in (*node.input, *node.output) if n and types.get(n) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        if node.op_type in kept:
            seen.add(node.op_type)
            assert floats and all(t == TensorProto.FLOAT for t in floats), node.op_type
        elif node.op_type in ("MatMul", "FusedAttention", "Add", "Sub"):
            assert floats and all(t == TensorProto.FLOAT16 for t in floats), node.op_type
    assert seen == kept
    assert summary.fp32_ops == {"LayerNormalization": 1, "BatchNormalization": 1, "ReduceMean": 1, "Softmax": 1}
    assert summary.fp16_ops["FusedAttention"] == 1 and summary.fp16_ops["MatMul"] == 4
    # float32 model inputs and outputs by default
    assert [i.type.tensor_type.elem_type for i in converted.graph.input] == [TensorProto.FLOAT]
    assert {o.type.tensor_type.elem_type for o in converted.graph.output} == {TensorProto.FLOAT}


def test_function_body_still_computes_in_float32() -> None:
    converted, _ = convert_to_fp16(encoder_block())
    (body,) = [f for f in converted.functions if f.name == "FusedAttention"]

    def nodes(graph_nodes: Sequence[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:  # the If branches and the Loop body too
        for n in graph_nodes:
            yield n
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from nodes(a.g.node)

    casts = [n for n in nodes(body.node) if n.op_type == "Cast"]
    assert casts and {onnx.helper.get_attribute_value(a) for n in casts for a in n.attribute} == {TensorProto.FLOAT}
    assert body.node[-1].op_type == "CastLike"  # back to the type of Q: float16 here


@pytest.mark.parametrize("dk,dv", [(8, 8), (4, 16)])
def test_fp16_matches_fp32_in_onnxruntime(dk: int, dv: int) -> None:
    model = encoder_block(dk, dv)
    converted, _ = convert_to_fp16(model)
    _assert_matches(model, converted, example_feeds(model))


def test_exported_sagan_matches_in_fp16(tmp_path) -> None:
    loaded = LoadedModel(module=SelfAttention(32).eval(), source="test:sagan-32")
    with torch.no_grad():
        loaded.module.gamma.fill_(0.8)  # make the attention branch count
    result = export_model(loaded, tmp_path / "sagan.onnx", ExportOptions(input_shapes=((1, 32, 12, 12),)))
    model = onnx.load(result.onnx_path)
    converted, summary = convert_to_fp16(model)
    assert len(fused_attention_nodes(converted)) == 1 and summary.fp16_ops["Conv"] == 3
    _assert_matches(model, converted, example_feeds(model))


def test_float16_io_when_asked() -> None:
    converted, _ = convert_to_fp16(encoder_block(), keep_io_types=False)
    assert {v.type.tensor_type.elem_type for v in (*converted.graph.input, *converted.graph.output)} == {TensorProto.FLOAT16}
    out = run_ort(converted, {k: v.astype(np.float16) for k, v in example_feeds(converted).items()})
    assert all(o.dtype == np.float16 and np.isfinite(o).all() for o in out)


def test_out_of_range_weights_are_clipped_not_inf() -> None:
    model = encoder_block()
    wo = next(i for i in model.graph.initializer if i.name == "wo")
    values = onnx.numpy_helper.to_array(wo).copy()
    values[0, 0] = 1e6
    wo.CopyFrom(onnx.numpy_helper.from_array(values, "wo"))
    converted, summary = convert_to_fp16(model)
    assert summary.values_clipped == 1
    wo16 = onnx.numpy_helper.to_array(next(i for i in converted.graph.initializer if i.name == "wo"))
    assert wo16.dtype == np.float16 and np.isfinite(wo16).all() and wo16[0, 0] == np.float16(65504)


def test_input_model_is_not_modified() -> None:
    model = encoder_block()
    before = model.SerializeToString()
    convert_to_fp16(model)
    assert model.SerializeToString() == before
