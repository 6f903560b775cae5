"""Small onnx-ir helpers the fusion rules share: constant evaluation, transposes, node builders."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

_DEFAULT_DOMAINS = ("", "ai.onnx")
#: How far ``constant_array`` follows producers (a scale is a handful of ops from its constants).
_MAX_DEPTH = 32


def is_op(node: ir.Node | None, *op_types: str, domain: str = "") -> bool:
    if node is None or node.op_type not in op_types:
        return False
    return node.domain in _DEFAULT_DOMAINS if domain == "" else node.domain == domain


def producer(value: ir.Value | None) -> ir.Node | None:
    return None if value is None else value.producer()


def rank(value: ir.Value | None) -> int | None:
    if value is None or value.shape is None:
        return None
    return len(value.shape)


def static_dim(value: ir.Value | None, axis: int) -> int | None:
    """The size of ``axis`` if shape inference knows it as a number."""
    if value is None or value.shape is None or not -len(value.shape) <= axis < len(value.shape):
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else None


def dims(value: ir.Value | None) -> list[int | str | None] | None:
    if value is None or value.shape is None:
        return None
    return [d if isinstance(d, int) else getattr(d, "value", None) for d in value.shape]


def _input_array(node: ir.Node, index: int, depth: int) -> np.ndarray | None:
    value = node.inputs[index] if index < len(node.inputs) else None
    return None if value is None else _evaluate(value, depth + 1)


def _known(array: np.ndarray | None) -> np.ndarray | None:
    """Shape arrays hold ``None`` for symbolic dims; arithmetic needs them all known."""
    if array is None:
        return None
    if array.dtype == object:
        if any(x is None for x in array.flat):
            return None
        return array.astype(np.int64)
    return array


def _constant_node_value(node: ir.Node) -> np.ndarray | None:
    for name, attr in node.attributes.items():
        if name == "value":
            return np.asarray(attr.value.numpy())
        if name in ("value_float", "value_int"):
            return np.array(attr.value, np.float32 if name == "value_float" else np.int64)
        if name in ("value_floats", "value_ints"):
            return np.array(list(attr.value), np.float32 if name == "value_floats" else np.int64)
    return None


def _slice(node: ir.Node, data: np.ndarray, depth: int) -> np.ndarray | None:
    starts, ends = _known(_input_array(node, 1, depth)), _known(_input_array(node, 2, depth))
    if starts is None or ends is None:
        return None
    given_axes = _known(_input_array(node, 3, depth)) if len(node.inputs) > 3 and node.inputs[3] is not None else None
    given_steps = _known(_input_array(node, 4, depth)) if len(node.inputs) > 4 and node.inputs[4] is not None else None
    axes = list(range(len(starts))) if given_axes is None else [int(a) for a in given_axes]
    steps = [1] * len(starts) if given_steps is None else [int(s) for s in given_steps]
    index = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = slice(int(s), int(max(min(e, 2**62), -(2**62))), st)
    return data[tuple(index)]


def _evaluate(value: ir.Value, depth: int = 0) -> np.ndarray | None:
    """``value`` as a numpy array if it is computable from constants and static shapes alone."""
    if depth > _MAX_DEPTH:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    node = value.producer()
    if node is None or node.domain not in _DEFAULT_DOMAINS:
        return None
    op = node.op_type
    if op == "Constant":
        return _constant_node_value(node)
    if op == "Shape":
        shape = node.inputs[0].shape if node.inputs[0] is not None else None
        if shape is None:
            return None
        full = np.array([d if isinstance(d, int) else None for d in shape], dtype=object)
        start = node.attributes.get_int("start", 0)
        end = node.attributes.get_int("end", len(full))
        return full[start:end]
    first = _input_array(node, 0, depth)
    if first is None:
        return None
    if op not in ("Identity", "Squeeze", "Unsqueeze", "Reshape", "Gather", "Slice", "Concat"):
        first = _known(first)  # only these move symbolic dims around without computing with them
        if first is None:
            return None
    if op == "Identity":
        return first
    if op == "Gather":
        indices = _known(_input_array(node, 1, depth))
        if indices is None:
            return None
        return np.asarray(np.take(first, indices, axis=node.attributes.get_int("axis", 0)), dtype=first.dtype)
    if op == "Slice":
        return _slice(node, first, depth)
    if op in ("Squeeze", "Unsqueeze", "Reshape"):
        if op == "Reshape":
            target = _known(_input_array(node, 1, depth))
            return None if target is None else first.reshape([int(s) for s in target])
        axes = _known(_input_array(node, 1, depth)) if len(node.inputs) > 1 and node.inputs[1] is not None else None
        if op == "Squeeze":
            return first.squeeze() if axes is None else first.squeeze(tuple(int(a) for a in axes))
        return None if axes is None else np.expand_dims(first, tuple(int(a) for a in axes))
    if op == "Concat":
        parts = [first] + [_input_array(node, i, depth) for i in range(1, len(node.inputs))]
        if any(p is None for p in parts):
            return None
        return np.concatenate(parts, axis=node.attributes.get_int("axis", 0))  # type: ignore[arg-type]
    if op == "Cast":
        return first.astype(ir.DataType(node.attributes.get_int("to", 1)).numpy())
    unary = {"Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Neg": np.negative}
    if op in unary:
        return np.asarray(unary[op](first))
    if op in ("Mul", "Div", "Add", "Sub", "Pow", "Mod"):
        second = _known(_input_array(node, 1, depth))
        if second is None:
            return None
        if op == "Div" and np.issubdtype(first.dtype, np.integer):
            return np.asarray(np.trunc(first / second), dtype=first.dtype)
        if op == "Mod":  # TorchScript's unflatten computes a negative dim's index with it
            remainder = np.fmod(first, second) if node.attributes.get_int("fmod", 0) else np.mod(first, second)
            return np.asarray(remainder, dtype=first.dtype)
        fn = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract, "Pow": np.power}[op]
        return np.asarray(fn(first, second), dtype=first.dtype)
    return None


def _safe_evaluate(value: ir.Value) -> np.ndarray | None:
    try:
        return _evaluate(value)
    except (ValueError, TypeError, IndexError, ZeroDivisionError, FloatingPointError):
        return None  # shapes that do not fit (the model would fail at run time too): not a constant


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value as an array if constants and static shapes determine it (TorchScript computes
    ``1/sqrt(dk)`` from ``Shape``), else None."""
    if value is None:
        return None
    result = _known(_safe_evaluate(value))
    return None if result is None else np.asarray(result)


def scalar_constant(value: ir.Value | None) -> float | None:
    """A one-element constant's value (any rank, e.g. ``[1]``), else None."""
    array = constant_array(value)
    if array is None or array.size != 1 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array.reshape(()))


def compose(perm: Sequence[int], inner: Sequence[int]) -> list[int]:
    """Permutation of ``Transpose(Transpose(x, inner), perm)`` as one Transpose of ``x``."""
    return [inner[p] for p in perm]


def swap_last(r: int) -> list[int]:
    return [*range(r - 2), r - 1, r - 2]


def const_node(array: np.ndarray, name: str) -> ir.Node:
    return ir.node("Constant", [], attributes={"value": ir.tensor(array, name=name)}, name=name)


class Builder:
    """Collects new nodes (to insert before one anchor) with unique names under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[ir.Node] = []

    def _name(self, what: str) -> str:
        return f"{self.prefix}/{what}_{len(self.nodes)}"

    def op(self, op_type: str, inputs: Sequence[ir.Value | None], domain: str = "", **attributes: object) -> ir.Value:
        name = self._name(op_type)
        node = ir.node(op_type, list(inputs), attributes=attributes or None, domain=domain, name=name)  # type: ignore[arg-type]
        node.outputs[0].name = name
        self.nodes.append(node)
        return node.outputs[0]

    def const(self, array: np.ndarray) -> ir.Value:
        node = const_node(array, self._name("const"))
        node.outputs[0].name = node.name
        self.nodes.append(node)
        return node.outputs[0]

    def ints(self, values: Sequence[int]) -> ir.Value:
        return self.const(np.array(list(values), np.int64))

    def transpose(self, value: ir.Value, perm: Sequence[int]) -> ir.Value:
        if list(perm) == list(range(len(perm))):
            return value
        return self.op("Transpose", [value], perm=list(perm))

    def unsqueeze(self, value: ir.Value, axes: Sequence[int]) -> ir.Value:
        return self.op("Unsqueeze", [value, self.ints(axes)]) if axes else value

    def squeeze(self, value: ir.Value, axes: Sequence[int]) -> ir.Value:
        return self.op("Squeeze", [value, self.ints(axes)]) if axes else value


def refine_reshape_shapes(graph: ir.Graph) -> int:
    """Fill in Reshape output dims that ONNX shape inference left unknown but the target shape
    fixes (TorchScript builds ``[b, n, H, C // H]`` from ``Shape`` at run time, hiding the head
    size); returns how many outputs improved. Re-run shape inference afterwards to propagate."""
    improved = 0
    for node in graph:
        if not is_op(node, "Reshape") or node.inputs[1] is None:
            continue
        target = _safe_evaluate(node.inputs[1])
        out = node.outputs[0]
        if target is None or target.ndim != 1 or (out.shape is not None and len(out.shape) != len(target)):
            continue
        allow_zero = node.attributes.get_int("allowzero", 0)
        before: list[object] | None = list(out.shape) if out.shape is not None else None  # no rank: even that is news
        dims: list[object] = list(before) if before is not None else [None] * len(target)
        for i, t in enumerate(target):
            if isinstance(dims[i], int) or t is None:
                continue
            t = int(t)
            if t > 0:
                dims[i] = t
            elif t == 0 and not allow_zero:
                known = static_dim(node.inputs[0], i)
                if known is not None:
                    dims[i] = known
        _infer_minus_one(node, target, dims)
        if before is None or dims != before:
            out.shape = ir.Shape(dims)  # type: ignore[arg-type]
            improved += 1
    return improved


def _infer_minus_one(node: ir.Node, target: np.ndarray, dims: list[object]) -> None:
    """Fill the ``-1`` entry of ``dims`` when the input's size and every other entry are known."""
    source = node.inputs[0]
    if source is None or source.shape is None or not all(isinstance(d, int) for d in source.shape):
        return
    free = [i for i, t in enumerate(target) if t is not None and int(t) == -1]
    known = [d for i, d in enumerate(dims) if i not in free]
    if len(free) != 1 or not all(isinstance(d, int) and d > 0 for d in known):
        return
    total, rest = int(np.prod(source.shape.numpy())), int(np.prod(known))  # type: ignore[arg-type]
    if rest and total % rest == 0:
        dims[free[0]] = total // rest


def splice(graph: ir.Graph, node: ir.Node, tape: ir.tape.Tape, out: ir.Value) -> None:
    """Put ``tape``'s initializers and nodes in ``graph`` before ``node``, and ``out`` in the place of
    ``node``'s one output (its shape, type and, for a graph output, its name); then remove ``node``."""
    for init in tape.initializers:
        graph.register_initializer(init)
    graph.insert_before(node, tape.nodes)
    old = node.outputs[0]
    out.shape, out.type = old.shape, old.type
    if old.is_graph_output():
        out.name = old.name
    old.replace_all_uses_with(out, replace_graph_outputs=True)
    graph.remove(node, safe=True)


def rewrite_each(model: ir.Model, op_type: str, rewrite: Callable[[ir.Graph, ir.Node], bool]) -> list[str]:
    """Call ``rewrite(graph, node)`` on every standard-domain ``op_type`` node of the main graph;
    returns the names of those it rewrote (it returns True for them)."""
    return [node.name or "?" for node in list(model.graph)
            if node.op_type == op_type and node.domain == "" and rewrite(model.graph, node)]
