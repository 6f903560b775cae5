"""Graph pass: 1×1 Conv projections that feed token layouts become one MatMul per shared input.

Contract. A 1×1 ``Conv`` (group 1, stride 1, no padding, constant weight ``[Cout, Cin, 1, 1]``)
whose only consumer is a ``Reshape`` to ``[B, Cout, *rest]`` whose only consumer is a
``Transpose`` moving the channel axis last, computes exactly

    Transpose(Reshape(X, [B, Cin, *rest]), perm) @ Wᵀ + b

which is how the zoo's blocks turn projections into tokens (SAGAN: conv -> flatten(2) ->
transpose(1, 2)). The Reshape/Transpose pair then moves onto the *input*, where projections
that read the same X with the same layout share it: SAGAN's Q, K and V become one
``[Cin, Cq+Ck+Cv]`` MatMul followed by a Split. ``quantize_dynamic`` turns that MatMul into one
``MatMulInteger``, which is fast on CPU, where ``ConvInteger`` is slower than fp32 Conv.

The reshape keeps B and C (its first two output dims equal the input's), so it only regroups
each channel's contiguous H·W block: exact in float32 up to summation order. Its target is a
constant (dynamo export) or ``Concat(Slice(Shape(y), 0, 2), [-1])``, flatten(2) with dynamic
shapes as the TorchScript exporter writes it (detectors); the input then gets ``[0, 0, -1]``.
A constant target may hold 0 and -1 anywhere (``view(b, -1, h*w)`` exports as ``[1, -1, N]``)
when the Conv's shapes are static: it is resolved against them, and must mean ``[B, Cout, ...]``.

When the Reshape is not followed by such a Transpose but its tokens reach an attention product
(a MatMul of two activations, or FusedAttention: the seed's ``view(b, -1, h*w)`` keys and values,
or one merged Q/K/V projection that a Split/Slice cuts in three), the channel-first result
``[B, Cout, *rest]`` is that product transposed back, so the projection still becomes a MatMul.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from attn_deploy.ops.contract import DOMAIN, OP_TYPE


@dataclass(frozen=True)
class TokenProjection:
    """One matched Conv -> Reshape -> Transpose chain."""

    conv: ir.Node
    reshape: ir.Node
    #: None: the Reshape's channel-first output [B, Cout, *rest] is what the graph reads.
    transpose: ir.Node | None
    weight: np.ndarray  # [Cout, Cin]
    bias: np.ndarray  # [Cout]
    input_shape: tuple[int, ...]  # Reshape target for X (channel dim = Cin)
    perm: tuple[int, ...]  # Transpose of the reshaped X that puts channels last
    #: Shape/Slice/Concat nodes computing a dynamic flatten(2) target, removed with the chain.
    shape_nodes: tuple[ir.Node, ...] = ()

    @property
    def output(self) -> ir.Value:
        """The value the rewrite replaces: the Transpose's output, or the Reshape's."""
        return (self.transpose or self.reshape).outputs[0]


def _ints(node: ir.Node, name: str, default: Sequence[int] | None = None) -> list[int] | None:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else (list(default) if default is not None else None)


def _int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return attr.as_int() if attr is not None else default


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _sole_consumer(value: ir.Value, op_type: str) -> ir.Node | None:
    if value.is_graph_output():
        return None
    users = value.consumers()
    return users[0] if len(users) == 1 and users[0].op_type == op_type and users[0].domain == "" else None


def _is_pointwise_conv(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight [Cout, Cin], bias [Cout]) when ``conv`` is a plain 1×1 convolution with constant weights."""
    if len(conv.inputs) < 2:
        return None
    weight = _const(conv.inputs[1])
    if weight is None or weight.ndim != 4 or weight.shape[2:] != (1, 1) or weight.dtype != np.float32:
        return None
    if _int(conv, "group", 1) != 1:
        return None
    if any(s != 1 for s in _ints(conv, "strides", [1, 1]) or []) or any(d != 1 for d in _ints(conv, "dilations", [1, 1]) or []):
        return None
    if any(p != 0 for p in _ints(conv, "pads", [0, 0, 0, 0]) or []):
        return None
    auto_pad = conv.attributes.get("auto_pad")
    if auto_pad is not None and auto_pad.as_string() not in ("NOTSET", "VALID"):
        return None
    cout = weight.shape[0]
    bias = np.zeros(cout, np.float32)
    if len(conv.inputs) > 2 and conv.inputs[2] is not None:
        b = _const(conv.inputs[2])
        if b is None:
            return None
        bias = b.astype(np.float32)
    return weight.reshape(cout, -1), bias


def _static_dims(value: ir.Value) -> list[int] | None:
    dims = value.shape
    if dims is None:
        return None
    ints = [d for d in dims if isinstance(d, int)]
    return ints if len(ints) == len(dims) else None


def _resolve_target(shape: np.ndarray, allowzero: int, dims: list[int]) -> list[int] | None:
    """ONNX Reshape's output shape for an input of ``dims`` and target ``shape`` (None if invalid)."""
    out = [dims[i] if s == 0 and not allowzero and i < len(dims) else int(s) for i, s in enumerate(shape.tolist())]
    total, known = int(np.prod(dims)), [d for d in out if d != -1]
    if out.count(-1) > 1 or any(d < 0 for d in known):
        return None
    if -1 in out:
        rest = int(np.prod(known))
        if rest == 0 or total % rest:
            return None
        out[out.index(-1)] = total // rest
    return out if int(np.prod(out)) == total else None


def _token_target(shape: np.ndarray, allowzero: int, x: ir.Value, y: ir.Value, cout: int, cin: int) -> list[int] | None:
    """The Reshape target to give X (channel entry Cin) when Reshape(conv output, ``shape``) keeps
    dims 0, 1 equal to B, Cout; None when that cannot be proved."""
    if shape.ndim != 1 or len(shape) < 3 or (allowzero and 0 in shape):
        return None
    dims = _static_dims(y) or _static_dims(x)
    if dims is not None and len(dims) == 4:  # resolve 0 and -1 against the known shapes
        batch, _, h, w = dims
        resolved = _resolve_target(shape, allowzero, [batch, cout, h, w])
        if resolved is None or resolved[:2] != [batch, cout]:
            return None
        target = [int(s) for s in shape]
        target[1] = cin  # X has Cin/Cout times the elements: the same target regroups it alike
        return target
    if shape[1] not in (cout, 0) or shape[0] != 0:
        return None  # dynamic shapes: only [0, Cout or 0, ...] proves that B and C are kept
    target = [int(s) for s in shape]
    target[1] = cin
    return target


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op_type and node.domain == "" else None


def _dynamic_flatten2(reshape: ir.Node, y: ir.Value) -> tuple[ir.Node, ...] | None:
    """The nodes of ``Concat(Slice(Shape(y), 0, 2), [-1])`` when that is the Reshape target.

    It is ``flatten(2)`` as the TorchScript exporter writes it for dynamic shapes (detectors),
    so the Reshape keeps B and C, and ``[0, 0, -1]`` does the same to the input.
    """
    concat = _producer(reshape.inputs[1], "Concat")
    if concat is None or len(concat.inputs) != 2 or _int(concat, "axis", 0) != 0:
        return None
    tail = _const(concat.inputs[1])
    sliced = _producer(concat.inputs[0], "Slice")
    if tail is None or tail.tolist() != [-1] or sliced is None:
        return None
    shape = _producer(sliced.inputs[0], "Shape")
    if shape is None or shape.inputs[0] is not y or "start" in shape.attributes or "end" in shape.attributes:
        return None
    bounds = [_const(v) for v in sliced.inputs[1:]]
    if any(b is None for b in bounds) or len(bounds) < 2:
        return None
    starts, ends = bounds[0].tolist(), bounds[1].tolist()  # type: ignore[union-attr]
    axes = bounds[2].tolist() if len(bounds) > 2 else [0]  # type: ignore[union-attr]
    steps = bounds[3].tolist() if len(bounds) > 3 else [1]  # type: ignore[union-attr]
    if (starts, ends, axes, steps) != ([0], [2], [0], [1]):
        return None
    if any(len(n.outputs[0].consumers()) != 1 for n in (shape, sliced, concat)):
        return None
    return (concat, sliced, shape)


#: Ops that move or cut tokens without mixing them, on the way from a projection to attention.
_ATTENTION_PATH = frozenset({"Split", "Slice", "Gather", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Mul", "Div", "Cast", "Identity"})


def _feeds_attention(value: ir.Value, max_depth: int = 4) -> bool:
    """True when ``value`` reaches FusedAttention or a MatMul of two activations (QKᵀ, PV)
    through ops that only move, cut or scale tokens."""
    frontier, seen = [value], set[int]()
    for _ in range(max_depth):
        following: list[ir.Value] = []
        for v in frontier:
            for user in v.consumers():
                if user.domain == DOMAIN and user.op_type == OP_TYPE:
                    return True
                if user.domain != "" or id(user) in seen:
                    continue
                seen.add(id(user))
                if user.op_type == "MatMul" and all(i is not None and _const(i) is None for i in user.inputs):
                    return True
                if user.op_type in _ATTENTION_PATH:
                    following.extend(user.outputs)
        frontier = following
    return False


def match_token_projection(conv: ir.Node) -> TokenProjection | None:
    """The chain starting at ``conv`` if it has the form in the module docstring, else None."""
    if conv.op_type != "Conv" or conv.domain != "":
        return None
    params = _is_pointwise_conv(conv)
    if params is None:
        return None
    weight, bias = params
    y, x = conv.outputs[0], conv.inputs[0]
    users = y.consumers()
    reshapes = [u for u in users if u.op_type == "Reshape" and u.domain == "" and u.inputs[0] is y]
    if x is None or y.is_graph_output() or len(reshapes) != 1:
        return None
    reshape = reshapes[0]
    shape_nodes: tuple[ir.Node, ...] = ()
    shape = _const(reshape.inputs[1])
    if shape is not None and len(users) == 1:
        target = _token_target(shape, _int(reshape, "allowzero", 0), x, y, *weight.shape)
        if target is None:
            return None
        input_shape = target
    elif shape is None and len(users) == 2 and (found := _dynamic_flatten2(reshape, y)) is not None and found[2] in users:
        shape_nodes, input_shape = found, [0, 0, -1]
    else:
        return None
    transpose = _sole_consumer(reshape.outputs[0], "Transpose")
    perm = _ints(transpose, "perm") if transpose is not None else None
    if perm is None or len(perm) != len(input_shape) or perm[-1] != 1:
        if reshape.outputs[0].is_graph_output() or not _feeds_attention(reshape.outputs[0]):
            return None
        transpose, perm = None, [0, *range(2, len(input_shape)), 1]
    return TokenProjection(conv, reshape, transpose, weight, bias, tuple(input_shape), tuple(perm), shape_nodes)


@dataclass(frozen=True)
class RewriteSummary:
    """What the pass did: one entry per MatMul it created, naming the Convs it replaced."""

    merged: list[tuple[str, list[str]]]

    @property
    def conv_count(self) -> int:
        return sum(len(convs) for _, convs in self.merged)


def _rewrite_group(
    graph: ir.Graph, group: list[TokenProjection], index: int, query_key: bool, tokens_cache: dict[tuple[int, tuple[int, ...], tuple[int, ...]], ir.Value]
) -> tuple[str, list[str]]:
    first = group[0]
    x = first.conv.inputs[0]
    assert x is not None
    base = f"attn_deploy_proj_{index}" + ("_query_key" if query_key else "")
    tape = ir.tape.Tape(graph)
    weight = np.concatenate([p.weight.T for p in group], axis=1).astype(np.float32)
    bias = np.concatenate([p.bias for p in group]).astype(np.float32)
    w = tape.initializer(ir.tensor(np.ascontiguousarray(weight), name=f"{base}_weight"))
    b = tape.initializer(ir.tensor(bias, name=f"{base}_bias"))
    layout = (id(x), first.input_shape, first.perm)
    tokens = tokens_cache.get(layout)
    if tokens is None:  # the first group reading X in this layout makes the tokens; later ones share them
        shape = tape.initializer(ir.tensor(np.array(first.input_shape, np.int64), name=f"{base}_shape"))
        reshaped = tape.op("Reshape", [x, shape], name=f"{base}_reshape", output=ir.Value(name=f"{base}_reshaped"))
        tokens = tape.op("Transpose", [reshaped], {"perm": list(first.perm)}, name=f"{base}_transpose", output=ir.Value(name=f"{base}_tokens"))
        tokens_cache[layout] = tokens
    product = tape.op("MatMul", [tokens, w], name=f"{base}_matmul", output=ir.Value(name=f"{base}_product"))
    projected = tape.op("Add", [product, b], name=f"{base}_add", output=ir.Value(name=f"{base}_projected"))
    if len(group) == 1:
        outputs: list[ir.Value] = [projected]
    else:
        sizes = tape.initializer(ir.tensor(np.array([p.weight.shape[0] for p in group], np.int64), name=f"{base}_sizes"))
        outputs = list(tape.op_multi_out(
            "Split", [projected, sizes], {"axis": -1}, name=f"{base}_split",
            outputs=[ir.Value(name=f"{base}_part{i}") for i in range(len(group))],
        ))
    for i, p in enumerate(group):
        if p.transpose is None:  # channels back in front: [B, *rest, Cout] -> [B, Cout, *rest]
            back = [0, len(p.perm) - 1, *range(1, len(p.perm) - 1)]
            outputs[i] = tape.op("Transpose", [outputs[i]], {"perm": back}, name=f"{base}_channels_first{i}", output=ir.Value(name=f"{base}_channels_first{i}"))
    # Tape(graph) appended its nodes at the end; move them before the first Conv to stay sorted.
    graph.remove(tape.nodes)
    graph.insert_before(first.conv, tape.nodes)
    for p, new in zip(group, outputs):
        old = p.output
        new.shape, new.type = old.shape, old.type
        if old.is_graph_output():
            new.name = old.name
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        graph.remove([n for n in (p.transpose, p.reshape, *p.shape_nodes, p.conv) if n is not None], safe=True)
    return f"{base}_matmul", [p.conv.name or "?" for p in group]


#: Ops a projection's tokens may pass through on their way into FusedAttention.
_PASS_THROUGH = frozenset({"Unsqueeze", "Squeeze", "Reshape", "Transpose", "Mul", "Div", "Cast", "Identity"})


def attention_role(value: ir.Value, max_depth: int = 4) -> str | None:
    """``"query_key"`` or ``"value"`` when ``value`` reaches FusedAttention's Q/K or V input
    through shape/scale ops only; None otherwise."""
    for _ in range(max_depth):
        users = value.consumers()
        if len(users) != 1:
            return None
        user = users[0]
        if user.domain == DOMAIN and user.op_type == OP_TYPE:
            index = next(i for i, v in enumerate(user.inputs) if v is value)
            return "query_key" if index in (0, 1) else "value" if index == 2 else None
        if user.domain != "" or user.op_type not in _PASS_THROUGH:
            return None
        value = user.outputs[0]
    return None


def convs_to_matmul(model: ir.Model, *, separate_query_key: bool = False) -> RewriteSummary:
    """Rewrite every matching 1×1 Conv projection of the main graph into MatMul (in place).

    Projections reading the same input with the same layout merge into one MatMul. With
    ``separate_query_key`` those feeding FusedAttention's Q or K get a MatMul of their own, named
    ``*_query_key_matmul``, so that quantization can leave it float (see ``dynamic.plan``).
    """
    groups: dict[tuple[int, tuple[int, ...], tuple[int, ...], bool], list[TokenProjection]] = {}
    for node in list(model.graph):
        match = match_token_projection(node)
        if match is not None:
            is_qk = separate_query_key and attention_role(match.output) == "query_key"
            key = (id(node.inputs[0]), match.input_shape, match.perm, is_qk)
            groups.setdefault(key, []).append(match)
    tokens_cache: dict[tuple[int, tuple[int, ...], tuple[int, ...]], ir.Value] = {}
    merged = [_rewrite_group(model.graph, group, i, key[3], tokens_cache) for i, (key, group) in enumerate(groups.items())]
    return RewriteSummary(merged)
