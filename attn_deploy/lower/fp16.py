"""float32 -> float16 conversion of an ONNX model that keeps overflow-prone ops in float32.

TensorRT 11 and TensorRT-RTX build strongly typed networks, so "fp16" means an fp16 ONNX model.
onnxconverter-common (Polygraphy's ``--fp-to-fp16``) retypes the main graph but not model-local
functions, which leaves FusedAttention's body inconsistent. This pass needs no change to function
bodies: FusedAttention's body casts Q, K, V to float32, does softmax and both products in float32,
and casts the result back to the type of Q (``CastLike``), so the node simply runs with float16
inputs and output.

Contract, per main-graph node:

* ``float32`` nodes: ops in :data:`KEEP_FP32` (softmax, reductions, normalisation, exp/pow/log,
  whose fp16 results overflow or lose too much), nodes with subgraphs, ops whose schema has no
  float16 type, and small shape arithmetic (every float input and output of rank <= 1, e.g. the
  scale factors a detector computes from image sizes, which fp16 would round).
* ``float16`` nodes: everything else that touches a float tensor.
* ``Cast`` nodes are placed between float16 and float32 nodes; float initializers and ``Constant``
  values become float16 (clipped to +-65504) when every reader wants float16.
* Graph inputs and outputs stay float32 unless ``keep_io_types=False``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper
from onnx_ir.passes.common import TopologicalSortPass

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.graph import default_opset
from attn_deploy.artifact.stage import StageResult
from attn_deploy.ops.contract import DOMAIN, OP_TYPE
from attn_deploy.ops.schema import fused_attention_schema

_F32 = TensorProto.FLOAT
_F16 = TensorProto.FLOAT16
_FP16_MAX = float(np.finfo(np.float16).max)

#: Ops computed in float32 whatever the model's precision (their float16 results overflow or
#: lose too much: exp(x) overflows at x > 11, a sum of squares at |x| > 256).
KEEP_FP32: frozenset[str] = frozenset(
    {
        "Softmax", "LogSoftmax", "Hardmax",
        "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
        "ReduceLogSumExp", "ReduceMax", "ReduceMin", "ReduceProd", "CumSum",
        "LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
        "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "SkipLayerNormalization",
        "Exp", "Pow", "Log",
        "NonMaxSuppression", "RoiAlign", "Range", "RandomNormal", "RandomUniform",
        "RandomNormalLike", "RandomUniformLike", "EyeLike", "ConstantOfShape",
    }
)
#: Ops whose input dtype does not matter (no cast inserted in front of them).
_ANY_INPUT = frozenset({"Shape", "Size", "Cast"})


@dataclass
class Fp16Summary:
    """What the conversion did: per op type, how many nodes run in each precision."""

    fp16_ops: Counter[str] = field(default_factory=Counter)
    fp32_ops: Counter[str] = field(default_factory=Counter)
    casts_inserted: int = 0
    initializers_converted: int = 0
    values_clipped: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "fp16_ops": dict(sorted(self.fp16_ops.items())),
            "fp32_ops": dict(sorted(self.fp32_ops.items())),
            "casts_inserted": self.casts_inserted,
            "initializers_converted": self.initializers_converted,
            "values_clipped_to_fp16_range": self.values_clipped,
        }


def _schema(node: onnx.NodeProto, opset: int) -> onnx.defs.OpSchema | None:
    if node.domain == DOMAIN and node.op_type == OP_TYPE:
        return fused_attention_schema()
    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _allows_fp16(schema: onnx.defs.OpSchema, params: list[onnx.defs.OpSchema.FormalParameter], index: int) -> bool:
    """Whether the formal parameter at ``index`` (variadic-aware) accepts tensor(float16)."""
    if not params:
        return False
    param = params[min(index, len(params) - 1)]
    constraints = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    allowed = constraints.get(param.type_str, [param.type_str])
    return "tensor(float16)" in allowed


class _Types:
    """Element type and rank of every main-graph value, from ONNX shape inference."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - inference is best effort; exporter value_info remains
            inferred = model
        self.elem: dict[str, int] = {}
        self.rank: dict[str, int | None] = {}
        g = inferred.graph
        for vi in (*g.input, *g.value_info, *g.output):
            t = vi.type.tensor_type
            self.elem[vi.name] = t.elem_type
            self.rank[vi.name] = len(t.shape.dim) if t.HasField("shape") else None
        for init in g.initializer:
            self.elem[init.name] = init.data_type
            self.rank[init.name] = len(init.dims)
        for node in g.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
                t = node.attribute[0].t
                self.elem[node.output[0]] = t.data_type
                self.rank[node.output[0]] = len(t.dims)

    def is_float(self, name: str) -> bool:
        return bool(name) and self.elem.get(name) == _F32

    def is_small(self, name: str) -> bool:
        rank = self.rank.get(name)
        return rank is not None and rank <= 1


def _node_precision(node: onnx.NodeProto, types: _Types, opset: int) -> tuple[str, list[bool], list[bool]]:
    """``("fp16"|"fp32", fp16 per input, fp16 per output)`` for one node."""
    inputs = [types.is_float(i) for i in node.input]
    outputs = [types.is_float(o) for o in node.output]
    fp32 = ("fp32", [False] * len(inputs), [False] * len(outputs))
    if not any(inputs) and not any(outputs):
        return fp32
    if node.op_type in KEEP_FP32 or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return fp32
    schema = _schema(node, opset)
    if schema is None:
        return fp32
    float_values = [n for n, f in zip([*node.input, *node.output], [*inputs, *outputs]) if f]
    if all(types.is_small(n) for n in float_values) and node.op_type != "Cast":
        return fp32  # shape arithmetic in float: keep exact
    if node.op_type == "Cast":
        # Only a Cast to float32 producing a feature map turns into a Cast to float16.
        to = helper.get_attribute_value(next(a for a in node.attribute if a.name == "to"))
        is_map = to == _F32 and not types.is_small(node.output[0])
        return ("fp16", [False] * len(inputs), [is_map]) if is_map else fp32
    in16 = [f and _allows_fp16(schema, list(schema.inputs), i) for i, f in enumerate(inputs)]
    out16 = [f and _allows_fp16(schema, list(schema.outputs), i) for i, f in enumerate(outputs)]
    if not any(in16) and not any(out16):
        return fp32
    return "fp16", in16, out16


def _to_fp16_array(array: np.ndarray, summary: Fp16Summary) -> np.ndarray:
    finite = np.isfinite(array)
    clipped = np.clip(array, -_FP16_MAX, _FP16_MAX)
    summary.values_clipped += int(np.count_nonzero(finite & (clipped != array)))
    return np.asarray(clipped, dtype=np.float16)


def convert_to_fp16(model: onnx.ModelProto, *, keep_io_types: bool = True) -> tuple[onnx.ModelProto, Fp16Summary]:
    """Return a float16 copy of ``model`` (the input is not modified) and a summary of choices."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    opset = default_opset(model)
    types = _Types(model)
    summary = Fp16Summary()

    plans = [_node_precision(n, types, opset) for n in graph.node]
    #: dtype each value is produced in after conversion (float values only)
    produced: dict[str, int] = {}
    wanted: dict[str, set[int]] = {}
    for node, (mode, in16, out16) in zip(graph.node, plans):
        if any(types.is_float(v) for v in (*node.input, *node.output)) and node.op_type not in ("Constant",):
            (summary.fp16_ops if mode == "fp16" else summary.fp32_ops)[node.op_type] += 1
        for name, f16 in zip(node.output, out16):
            if types.is_float(name):
                produced[name] = _F16 if f16 else _F32
        if node.op_type in _ANY_INPUT:
            continue
        for name, f16 in zip(node.input, in16):
            if types.is_float(name):
                wanted.setdefault(name, set()).add(_F16 if f16 else _F32)
    for out in graph.output:
        if types.is_float(out.name):
            wanted.setdefault(out.name, set()).add(_F32 if keep_io_types else _F16)

    # Constants and initializers: float16 when every reader wants float16.
    for init in graph.initializer:
        if init.data_type == _F32 and wanted.get(init.name) == {_F16}:
            init.CopyFrom(numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(init), summary), init.name))
            summary.initializers_converted += 1
            produced[init.name] = _F16
        elif init.data_type == _F32:
            produced[init.name] = _F32
    for node in graph.node:
        if node.op_type == "Constant" and types.is_float(node.output[0]):
            attr = node.attribute[0]
            if wanted.get(node.output[0]) == {_F16} and attr.type == onnx.AttributeProto.TENSOR:
                attr.t.CopyFrom(numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(attr.t), summary), attr.t.name))
                produced[node.output[0]] = _F16
            else:
                produced[node.output[0]] = _F32
    for inp in graph.input:
        if types.is_float(inp.name):
            if not keep_io_types:
                inp.type.tensor_type.elem_type = _F16
            produced[inp.name] = _F32 if keep_io_types else _F16

    for node, (mode, _, out16) in zip(graph.node, plans):
        if node.op_type == "Cast" and mode == "fp16" and out16 and out16[0]:
            for a in node.attribute:
                if a.name == "to":
                    a.i = _F16

    # Insert casts where a value is read in a precision other than the one it is produced in.
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []

    def cast_of(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}_as_{'fp16' if to == _F16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"{casts[key]}_cast"))
            summary.casts_inserted += 1
        return casts[key]

    for node, (_, in16, _) in zip(graph.node, plans):
        for attr in node.attribute:
            for sub in (attr.g,) if attr.type == onnx.AttributeProto.GRAPH else tuple(attr.graphs):
                # Subgraphs read outer values by name and stay float32: rename those reads.
                for name in _outer_reads(sub):
                    if produced.get(name) == _F16:
                        _rename_reads(sub, name, cast_of(name, _F32))
        if node.op_type not in _ANY_INPUT:
            for i, (name, f16) in enumerate(zip(node.input, in16)):
                if name in produced:
                    want = _F16 if f16 else _F32
                    if produced[name] != want:
                        node.input[i] = cast_of(name, want)
        new_nodes.append(node)

    # Graph outputs: rename a float16 producer's value and cast back under the output's name.
    for out in graph.output:
        want = _F32 if keep_io_types else _F16
        if out.name in produced and produced[out.name] != want:
            inner = f"{out.name}_{'fp16' if produced[out.name] == _F16 else 'fp32'}_value"
            for n in new_nodes:
                n.input[:] = [inner if x == out.name else x for x in n.input]
                n.output[:] = [inner if x == out.name else x for x in n.output]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=want, name=f"{out.name}_output_cast"))
            summary.casts_inserted += 1
        if types.is_float(out.name) and not keep_io_types:
            out.type.tensor_type.elem_type = _F16

    del graph.node[:]
    graph.node.extend(new_nodes)
    # Exporter value_info still says float32 for retyped values; let consumers re-infer.
    del graph.value_info[:]
    return _sorted(model), summary


def _sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every node after the producers of what it reads (inserted casts follow their source)."""
    ir_model = ir.from_proto(model)
    TopologicalSortPass()(ir_model)
    return ir.to_proto(ir_model)


def _outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph (and its nested subgraphs) reads from enclosing scopes."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    reads: set[str] = set()
    for node in graph.node:
        reads.update(i for i in node.input if i and i not in defined)
        for attr in node.attribute:
            for sub in (attr.g,) if attr.type == onnx.AttributeProto.GRAPH else tuple(attr.graphs):
                reads.update(r for r in _outer_reads(sub) if r not in defined)
        defined.update(node.output)
    return reads


def _rename_reads(graph: onnx.GraphProto, old: str, new: str) -> None:
    if any(v.name == old for v in (*graph.input, *graph.initializer)) or any(old in n.output for n in graph.node):
        return  # shadowed here
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        for attr in node.attribute:
            for sub in (attr.g,) if attr.type == onnx.AttributeProto.GRAPH else tuple(attr.graphs):
                _rename_reads(sub, old, new)


def to_fp16(artifact: Artifact, *, keep_io_types: bool = True) -> StageResult[Fp16Summary]:
    """The fp16 stage: ``artifact`` in float16, its manifest's precision ``fp16`` (what TensorRT's lowering and ``check`` read)."""
    converted, summary = convert_to_fp16(artifact.proto, keep_io_types=keep_io_types)
    return StageResult(artifact.evolve(converted, stage="fp16", precision="fp16"), summary)
