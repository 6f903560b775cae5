"""Graph pass: a scatter of whole rows written as ``ScatterElements`` becomes ``ScatterND``.

torchvision's ``MultiScaleRoIAlign`` merges its levels for ONNX as
``res.scatter(0, idx.view(-1, 1, 1, 1).expand_as(level), level)``: every element of each pooled
``[R, 256, 7, 7]`` block carries its own index, and ONNX Runtime's ``ScatterElements`` walks them
one at a time (about a seventh of a Faster R-CNN's int8 time on CPU). When the indices are one row
index broadcast over the trailing dimensions and each update row is a whole row of the data, that
is exactly ``ScatterND(data, idx.reshape(-1, 1), updates)``, which copies whole rows.

Contract: only ``ScatterElements`` on axis 0 without reduction, whose indices are ``Expand`` of a
``[-1, 1, ..., 1]`` reshape, and whose updates and data agree on every trailing dimension as static
numbers (read by ONNX shape inference with data propagation). Anything else is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from attn_deploy.fuse.graph import splice


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Every value's shape as ONNX shape inference with data propagation finds it (None: unknown dim)."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int | None, ...]] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)
    return shapes


def _row_index(indices: ir.Value, rank: int) -> ir.Value | None:
    """The ``[R, 1, ..., 1]`` row index that ``indices`` expands, if it is one."""
    expand = indices.producer()
    if expand is None or expand.op_type != "Expand" or expand.domain != "" or expand.inputs[0] is None:
        return None
    rows = expand.inputs[0]
    reshape = rows.producer()
    if reshape is None or reshape.op_type != "Reshape" or reshape.inputs[1] is None:
        return None
    target = ir.convenience.get_const_tensor(reshape.inputs[1])
    if target is None or target.numpy().tolist() != [-1] + [1] * (rank - 1):
        return None
    return rows


def _rewrite(graph: ir.Graph, node: ir.Node, shapes: dict[str, tuple[int | None, ...]]) -> bool:
    attrs = node.attributes
    if (attrs["axis"].as_int() if "axis" in attrs else 0) != 0 or (attrs["reduction"].as_string() if "reduction" in attrs else "none") != "none":
        return False
    data, indices, updates = node.inputs
    if data is None or indices is None or updates is None:
        return False
    data_shape, update_shape = shapes.get(data.name or ""), shapes.get(updates.name or "")
    if data_shape is None or update_shape is None or len(data_shape) < 2 or len(data_shape) != len(update_shape):
        return False
    if None in data_shape[1:] or data_shape[1:] != update_shape[1:]:
        return False
    rows = _row_index(indices, len(data_shape))
    if rows is None:
        return False
    name = node.name or "scatter"
    tape = ir.tape.Tape()
    column = tape.initializer(ir.tensor(np.array([-1, 1], np.int64), name=f"{name}_row_index_shape"))
    index = tape.op("Reshape", [rows, column], name=f"{name}_row_index", output=ir.Value(name=f"{name}_row_index"))
    out = tape.op("ScatterND", [data, index, updates], name=f"{name}_rows", output=ir.Value(name=f"{name}_rows"))
    splice(graph, node, tape, out)
    shapes[out.name or ""] = data_shape  # a later scatter may write into this one's result
    return True


def rows_to_scatter_nd(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with every eligible row scatter of its main graph as ``ScatterND`` (the input is not
    modified), and the rewritten nodes' names. A model without one comes back as it is."""
    if not any(n.op_type == "ScatterElements" and n.domain == "" for n in model.graph.node):
        return model, []
    shapes = _static_shapes(model)
    ir_model = ir.from_proto(model)
    done = [node.name or "?" for node in list(ir_model.graph)
            if node.op_type == "ScatterElements" and node.domain == "" and _rewrite(ir_model.graph, node, shapes)]
    if not done:
        return model, []
    for node in list(ir_model.graph):  # the Expand nodes nothing reads any more
        if node.op_type == "Expand" and not any(o.uses() or o.is_graph_output() for o in node.outputs):
            ir_model.graph.remove(node, safe=True)
    rewritten = ir.to_proto(ir_model)
    rewritten.ir_version = model.ir_version
    return rewritten, done
