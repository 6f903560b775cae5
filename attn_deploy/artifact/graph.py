"""Read-only questions about an ONNX graph that every stage asks: opset, attention nodes, value types.

A dimension (``Dim``) is an ``int`` when static, the symbol (``str``) or ``None`` when dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from attn_deploy.ops.contract import DOMAIN, LOWERED_DOMAIN, OP_TYPE

#: ONNX Runtime 1.2x/1.3x accepts IR 10; onnx 1.23 would write 14 by default, which it rejects.
IR_VERSION = 10
Dim = int | str | None


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset; ValueError if it imports none."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ValueError("model has no default-domain opset import")


def is_fused_attention(node: onnx.NodeProto) -> bool:
    """An ``attn_deploy::FusedAttention`` node as exported (not yet lowered)."""
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def is_attention_node(node: onnx.NodeProto) -> bool:
    """A FusedAttention node, exported or lowered for a target (domain ``attn_deploy.ort``)."""
    return is_fused_attention(node) or node.domain == LOWERED_DOMAIN


def fused_attention_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """FusedAttention nodes of the main graph, in graph order."""
    return [n for n in model.graph.node if is_fused_attention(n)]


def dims_of(type_proto: onnx.TypeProto) -> list[Dim] | None:
    """A tensor type's dims, or None when it has no shape."""
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def dims_product(dims: list[Dim]) -> int | None:
    """Product of the dims, or None when any is symbolic or unknown."""
    total = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        total *= d
    return total


def dtype_name(elem_type: int) -> str | None:
    """NumPy's name for an ONNX element type (``float32``), None when unknown (0)."""
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else None


@dataclass(frozen=True)
class TypedValue:
    """Element type (ONNX enum, 0 when unknown) and dims (None when unknown) of one graph value."""

    elem_type: int
    dims: list[Dim] | None


def typed_values(model: onnx.ModelProto) -> dict[str, TypedValue]:
    """Every value ONNX shape inference can type (the exporter's value_info is the fallback)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort
        inferred = model
    graph = inferred.graph
    values = {vi.name: TypedValue(vi.type.tensor_type.elem_type, dims_of(vi.type)) for vi in (*graph.input, *graph.value_info, *graph.output)}
    for init in graph.initializer:
        values[init.name] = TypedValue(init.data_type, [int(d) for d in init.dims])
    return values


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs a caller feeds (initializers listed as inputs left out), in order."""
    initializers = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in initializers]
