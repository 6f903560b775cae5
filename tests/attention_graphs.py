"""Tiny hand-built ONNX models with FusedAttention nodes (no PyTorch export, so tests stay fast)."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.ops.bodies import attach_fused_attention_function
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION


def encoder_block(dk: int = 8, dv: int = 8, *, tokens: int = 16, dim: int = 16, heads: int = 2, batch: int | str = 1) -> onnx.ModelProto:
    """x [B, N, D] -> LayerNorm -> Q/K/V projections -> FusedAttention -> out projection + x
    -> BatchNormalization (over tokens) -> ``out``; also ``probs`` = Softmax(out - ReduceMean(out)).

    Holds every op the fp16 conversion must keep in float32 next to ones it converts.
    """
    rng = np.random.default_rng(0)
    inits = []

    def weight(name: str, *shape: int, scale: float = 1.0) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def ints(name: str, values: list[int]) -> str:
        inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    nodes = [
        helper.make_node("LayerNormalization", ["x", weight("ln_w", dim), weight("ln_b", dim, scale=0.1)], ["h"], axis=-1),
        helper.make_node("MatMul", ["h", weight("wq", dim, heads * dk, scale=dim**-0.5)], ["q2"]),
        helper.make_node("MatMul", ["h", weight("wk", dim, heads * dk, scale=dim**-0.5)], ["k2"]),
        helper.make_node("MatMul", ["h", weight("wv", dim, heads * dv, scale=dim**-0.5)], ["v2"]),
        helper.make_node("Reshape", ["q2", ints("qk_shape", [0, 0, heads, dk])], ["q3"]),
        helper.make_node("Reshape", ["k2", "qk_shape"], ["k3"]),
        helper.make_node("Reshape", ["v2", ints("v_shape", [0, 0, heads, dv])], ["v3"]),
        helper.make_node("Transpose", ["q3"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k3"], ["k"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["v3"], ["v"], perm=[0, 2, 1, 3]),
        helper.make_node(
            OP_TYPE, ["q", "k", "v"], ["o"], domain=DOMAIN, name="attn0",
            scale=1.0 / math.sqrt(dk), plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION,
        ),
        helper.make_node("Transpose", ["o"], ["o3"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["o3", ints("o_shape", [0, 0, heads * dv])], ["o2"]),
        helper.make_node("MatMul", ["o2", weight("wo", heads * dv, dim, scale=(heads * dv) ** -0.5)], ["proj"]),
        helper.make_node("Add", ["proj", "x"], ["y"]),
        helper.make_node(
            "BatchNormalization",
            ["y", weight("bn_s", tokens), weight("bn_b", tokens, scale=0.1), weight("bn_m", tokens, scale=0.1), "bn_var"],
            ["out"],
        ),
        helper.make_node("ReduceMean", ["out", ints("last_axis", [-1])], ["mean"], keepdims=1),
        helper.make_node("Sub", ["out", "mean"], ["centred"]),
        helper.make_node("Softmax", ["centred"], ["probs"], axis=-1),
    ]
    inits.append(numpy_helper.from_array(np.ones(tokens, np.float32), "bn_var"))
    graph = helper.make_graph(
        nodes,
        "encoder_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, tokens, dim])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, tokens, dim]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, tokens, dim]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])
    attach_fused_attention_function(model)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def example_feeds(model: onnx.ModelProto, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds
