"""Lower FusedAttention nodes for TensorRT / TensorRT-RTX, one choice per node (DESIGN §3).

* ``plugin``: a FusedAttention plugin creator is registered, so the node stays; the ONNX parser
  prefers a registered creator (name, ``plugin_namespace``, ``plugin_version``) over the body.
* ``native-attention``: dk == dv and float16 inputs: ONNX ``Attention`` (opset 23), which
  TensorRT builds as its fused attention layer. TensorRT refuses it for float32 inputs and for
  dk != dv, and rejects the ``softmax_precision`` attribute ("not supported in TensorRT
  Attention"), so the softmax precision inside is TensorRT's choice, not the contract's.
* ``body``: the node stays and expands into its function at parse time. The exported body is the
  memory-bounded query-block ``Loop``, which TensorRT-RTX 1.7 cannot build (its parser rejects a
  Loop without a condition input, and with one the builder fails an internal assertion), so the
  function is replaced by :func:`tensorrt_body`: one float32 MatMul-Softmax-MatMul, the pattern
  TensorRT's own attention fusion recognises and runs without materialising the score matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import onnx
from onnx import TensorProto, helper, version_converter

from attn_deploy.export.finalize import default_opset, fused_attention_nodes
from attn_deploy.export.manifest import attention_nodes_info
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION

Choice = Literal["plugin", "native-attention", "body"]
#: ONNX opset that introduced ``Attention``.
ATTENTION_OPSET = 23
_F32 = TensorProto.FLOAT
_F16 = TensorProto.FLOAT16


@dataclass(frozen=True)
class NodeLowering:
    """How one FusedAttention node is built, and why."""

    node: str
    choice: Choice
    reason: str
    dk: int | str | None
    dv: int | str | None
    dtype: str
    has_bias: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def tensorrt_body(opset: int, *, with_bias: bool) -> onnx.FunctionProto:
    """FusedAttention as one float32 MatMul-Softmax-MatMul (no Loop), output cast back to Q's type."""
    nodes = [
        helper.make_node("Cast", ["Q"], ["qf"], to=_F32),
        helper.make_node("Cast", ["K"], ["kf"], to=_F32),
        helper.make_node("Cast", ["V"], ["vf"], to=_F32),
        helper.make_node("Transpose", ["kf"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["qf", "kt"], ["qk"]),
    ]
    scale = helper.make_node("Constant", [], ["scale_value"])
    scale.attribute.append(onnx.AttributeProto(name="value_float", ref_attr_name="scale", type=onnx.AttributeProto.FLOAT))
    nodes += [scale, helper.make_node("Mul", ["qk", "scale_value"], ["scores"])]
    inputs = ["Q", "K", "V"]
    if with_bias:
        inputs.append("bias")
        nodes += [helper.make_node("Cast", ["bias"], ["bf"], to=_F32), helper.make_node("Add", ["scores", "bf"], ["biased"])]
    nodes += [
        helper.make_node("Softmax", ["biased" if with_bias else "scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "vf"], ["of"]),
        helper.make_node("CastLike", ["of", "Q"], ["O"]),
    ]
    return helper.make_function(
        DOMAIN, OP_TYPE, inputs, ["O"], nodes, [helper.make_opsetid("", opset)],
        attributes=["scale", "plugin_namespace", "plugin_version"],
        doc_string="softmax(scale * Q @ K^T [+ bias]) @ V in float32, unblocked (TensorRT fuses it).",
    )


def _input_dtypes(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - best effort; unknown dtype means "not float16"
        inferred = model
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.value_info, *g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def plan_lowering(model: onnx.ModelProto, *, plugin: bool) -> list[NodeLowering]:
    """Choose, for every FusedAttention node in graph order, how TensorRT builds it."""
    dtypes = _input_dtypes(model)
    plans = []
    for info in attention_nodes_info(model):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(dtypes[info["inputs"][0]]).name if dtypes.get(info["inputs"][0]) else "unknown"
        dk, dv = info["dk"], info["dv"]
        if plugin:
            choice, reason = "plugin", "a FusedAttention plugin creator is registered"
        elif dtype != "float16":
            choice, reason = "body", f"{dtype} inputs: TensorRT's native attention needs float16 (build with --fp16)"
        elif not (isinstance(dk, int) and dk == dv):
            choice, reason = "body", f"dk={dk} != dv={dv}: TensorRT's native attention needs K and V of one shape"
        else:
            choice, reason = "native-attention", f"float16 and dk == dv == {dk}"
        plans.append(NodeLowering(info["name"], choice, reason, dk, dv, dtype, info["has_bias"]))  # type: ignore[arg-type]
    return plans


def _to_attention_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Raise the default opset to 23 (the version converter cannot see through local functions)."""
    if default_opset(model) >= ATTENTION_OPSET:
        return model
    functions = list(model.functions)
    del model.functions[:]
    converted = version_converter.convert_version(model, ATTENTION_OPSET)
    converted.functions.extend(functions)
    converted.ir_version = model.ir_version
    return converted


def lower_for_tensorrt(model: onnx.ModelProto, *, plugin: bool) -> tuple[onnx.ModelProto, list[NodeLowering]]:
    """Return a copy of ``model`` ready for TensorRT's ONNX parser, and the per-node plan."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    plans = plan_lowering(model, plugin=plugin)
    if any(p.choice == "native-attention" for p in plans):
        model = _to_attention_opset(model)
    by_name = {p.node: p for p in plans}
    for node in fused_attention_nodes(model):
        if by_name[node.name].choice != "native-attention":
            continue
        scale = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "scale")
        inputs = list(node.input[:4]) if len(node.input) > 3 and node.input[3] else list(node.input[:3])
        replacement = helper.make_node(
            "Attention", inputs, [node.output[0]], name=node.name, scale=float(scale)
        )
        node.CopyFrom(replacement)
    kept = [n for n in fused_attention_nodes(model)]
    others = [f for f in model.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del model.functions[:]
    model.functions.extend(others)
    if kept:
        with_bias = any(len(n.input) > 3 and n.input[3] for n in kept)
        model.functions.append(tensorrt_body(default_opset(model), with_bias=with_bias))
    else:
        kept_imports = [i for i in model.opset_import if i.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept_imports)
    if kept and not any(i.domain == DOMAIN for i in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    return model, plans
