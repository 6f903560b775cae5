"""The FunctionProtos ``lower --target ort`` writes, one per implementation (domain ``attn_deploy.ort``).

Each keeps the FusedAttention contract (inputs, output, float32 softmax) so a lowered node reads
like the original; ONNX Runtime inlines them at load time, so they cost nothing at run time.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from attn_deploy.ops.contract import LOWERED_DOMAIN
from attn_deploy.ops.onnx_body import make_function

_FLOAT = TensorProto.FLOAT
MS_DOMAIN = "com.microsoft"


def _ref(name: str, attr_type: int, as_name: str | None = None) -> onnx.AttributeProto:
    return onnx.AttributeProto(name=as_name or name, ref_attr_name=name, type=attr_type)


def _scale_constant() -> onnx.NodeProto:
    node = helper.make_node("Constant", [], ["scale_value"])
    node.attribute.append(_ref("scale", onnx.AttributeProto.FLOAT, "value_float"))
    return node


def _ints(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values))


def plain_function(opset: int, *, with_bias: bool) -> onnx.FunctionProto:
    """MatMul / Softmax / MatMul over the whole score matrix: for small N."""
    nodes = [
        helper.make_node("Cast", ["Q"], ["Qf"], to=_FLOAT),
        helper.make_node("Cast", ["K"], ["Kf"], to=_FLOAT),
        helper.make_node("Cast", ["V"], ["Vf"], to=_FLOAT),
        _scale_constant(),
        helper.make_node("Mul", ["Qf", "scale_value"], ["Qs"]),
        helper.make_node("Transpose", ["Kf"], ["Kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["Qs", "Kt"], ["S"]),
    ]
    scores = "S"
    if with_bias:
        nodes += [helper.make_node("Cast", ["bias"], ["bf"], to=_FLOAT), helper.make_node("Add", ["S", "bf"], ["Sb"])]
        scores = "Sb"
    nodes += [
        helper.make_node("Softmax", [scores], ["P"], axis=-1),
        helper.make_node("MatMul", ["P", "Vf"], ["Of"]),
        helper.make_node("CastLike", ["Of", "Q"], ["O"]),
    ]
    return helper.make_function(
        LOWERED_DOMAIN, "FusedAttentionPlain" + ("Bias" if with_bias else ""),
        ["Q", "K", "V"] + (["bias"] if with_bias else []), ["O"], nodes,
        [helper.make_opsetid("", opset)], attributes=["scale"],
        doc_string="softmax(scale * Q @ K^T [+ bias]) @ V over the whole score matrix, float32 inside.",
    )


def blocked_function(opset: int, *, with_bias: bool, budget_elements: int) -> onnx.FunctionProto:
    """The query-blocked Loop body (``ops/onnx_body.py``) with this model's score-block budget."""
    return make_function(opset, with_bias=with_bias, budget_elements=budget_elements,
                         domain=LOWERED_DOMAIN, name="FusedAttentionBlocked" + ("Bias" if with_bias else ""))


def mha_function(opset: int) -> onnx.FunctionProto:
    """``com.microsoft.MultiHeadAttention`` (float32 only) around the contract's 4-D layout.

    MultiHeadAttention takes ``[B, N, H·d]``: Q/K/V are transposed to ``[B, N, H, d]`` and flattened,
    and the output goes back. A Transpose that only moves size-1 axes (H = 1) is a plain copy in ORT.
    """
    mha = helper.make_node("MultiHeadAttention", ["q3", "k3", "v3"], ["o3"], domain=MS_DOMAIN)
    mha.attribute.extend([_ref("num_heads", onnx.AttributeProto.INT), _ref("scale", onnx.AttributeProto.FLOAT)])
    nodes = [_ints("flat3", [0, 0, -1])]
    for x in ("Q", "K", "V"):
        low = x.lower()
        nodes += [
            helper.make_node("Transpose", [x], [f"{low}t"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{low}t", "flat3"], [f"{low}3"]),
        ]
    nodes += [
        mha,
        _ints("zero2", [0, 0]),
        _ints("one", [1]),
        _ints("two", [2]),
        _ints("minus1", [-1]),
        helper.make_node("Shape", ["Q"], ["q_shape"]),
        helper.make_node("Slice", ["q_shape", "one", "two"], ["heads"]),
        helper.make_node("Concat", ["zero2", "heads", "minus1"], ["split4"], axis=0),
        helper.make_node("Reshape", ["o3", "split4"], ["o4"]),
        helper.make_node("Transpose", ["o4"], ["O"], perm=[0, 2, 1, 3]),
    ]
    return helper.make_function(
        LOWERED_DOMAIN, "FusedAttentionMHA", ["Q", "K", "V"], ["O"], nodes,
        [helper.make_opsetid("", opset), helper.make_opsetid(MS_DOMAIN, 1)], attributes=["scale", "num_heads"],
        doc_string="FusedAttention as ORT's MultiHeadAttention (CPU flash kernel for float32 without bias).",
    )
