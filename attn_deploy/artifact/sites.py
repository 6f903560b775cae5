"""``AttentionSite``: the one description of a FusedAttention node that every stage reads.

Export and fuse record sites in the manifest, lower chooses an implementation per site, the
TensorRT lowering and the plugin checks read dtype and head sizes from it, ``inspect`` prints it.
A dimension is an ``int`` when static, a symbol (``str``) or ``None`` when dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from attn_deploy.artifact.graph import Dim, TypedValue, dims_product, dtype_name, is_attention_node, typed_values


@dataclass(frozen=True)
class AttentionNode:
    """What the graph and the manifest both say of an attention node: ``Q [B,H,Nq,dk]``,
    ``K [B,H,Nk,dk]``, ``V [B,H,Nk,dv]``, its scale, and whether it has a bias input."""

    name: str
    inputs: tuple[str, ...]
    output: str
    B: Dim
    H: Dim
    Nq: Dim
    Nk: Dim
    dk: Dim
    dv: Dim
    scale: float
    has_bias: bool  # the node has a bias input (possibly the all-zero one export adds)


@dataclass(frozen=True)
class AttentionSite(AttentionNode):
    """One attention node in a graph: where it is, what it is lowered to, and its input type."""

    index: int  # position in graph.node
    op_type: str
    domain: str
    dtype: str | None  # NumPy name of Q's element type, None when unknown
    bias_is_zero: bool  # the bias is a constant all-zero tensor
    #: ``(h, w)`` of the feature map K's Nk tokens were flattened from (a SAGAN block's), when the graph says so.
    feature_map: tuple[int, int] | None = None

    @property
    def real_bias(self) -> bool:
        """A bias that changes the result (not the zero bias shared functions need)."""
        return self.has_bias and not self.bias_is_zero

    @property
    def score_elements(self) -> int | None:
        """Elements of the full B·H·Nq·Nk score matrix (None when a dimension is dynamic)."""
        return dims_product([self.B, self.H, self.Nq, self.Nk])

    @property
    def score_matrix_bytes(self) -> int | None:
        """Bytes of the score matrix if materialised (float32: the contract's softmax type)."""
        n = self.score_elements
        return None if n is None else 4 * n

    @property
    def flops(self) -> int | None:
        """2·B·H·Nq·Nk·(dk + dv): the two matrix products (softmax not counted)."""
        n = self.score_elements
        if n is None or not isinstance(self.dk, int) or not isinstance(self.dv, int):
            return None
        return 2 * n * (self.dk + self.dv)

    @property
    def head_sizes_match(self) -> bool:
        """dk == dv, both static: what TensorRT's native attention layer needs."""
        return isinstance(self.dk, int) and self.dk == self.dv


def _constant_zero(model: onnx.ModelProto, name: str) -> bool:
    for init in model.graph.initializer:
        if init.name == name:
            return not np.any(numpy_helper.to_array(init))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and list(node.output) == [name]:
            for attr in node.attribute:
                if attr.name == "value":
                    return not np.any(numpy_helper.to_array(attr.t))
    return False


def _four_dims(values: dict[str, TypedValue], name: str) -> list[Dim]:
    value = values.get(name)
    dims = value.dims if value is not None else None
    return dims if dims is not None and len(dims) == 4 else [None] * 4


def _first(*dims: Dim) -> Dim:
    return next((d for d in dims if d is not None), None)


#: Ops that only lay tokens out (or scale them): a feature map seen through them is still the tokens' grid.
_LAYOUT_OPS = frozenset({"Reshape", "Flatten", "Transpose", "Unsqueeze", "Squeeze", "Identity", "Cast", "Mul", "Div"})


def _feature_map(model: onnx.ModelProto, values: dict[str, TypedValue], name: str, tokens: Dim) -> tuple[int, int] | None:
    """The ``(h, w)`` of a rank-4 ``[B, C, h, w]`` tensor with h·w == ``tokens`` that ``name`` is a re-layout of."""
    if not isinstance(tokens, int):
        return None
    producers = {out: node for node in model.graph.node for out in node.output}
    for _ in range(8):
        node = producers.get(name)
        if node is None or node.op_type not in _LAYOUT_OPS or not node.input:
            return None
        name = node.input[0]
        value = values.get(name)
        dims = value.dims if value is not None else None
        if dims is not None and len(dims) == 4 and isinstance(dims[2], int) and isinstance(dims[3], int) and dims[2] * dims[3] == tokens:
            return dims[2], dims[3]
    return None


def attention_sites(model: onnx.ModelProto) -> list[AttentionSite]:
    """Every FusedAttention node of the main graph (exported or already lowered), in graph order."""
    values = typed_values(model)
    sites = []
    for index, node in enumerate(model.graph.node):
        if not is_attention_node(node):
            continue
        q, k, v = (_four_dims(values, name) for name in node.input[:3])
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        has_bias = len(node.input) > 3 and bool(node.input[3])
        query = values.get(node.input[0])
        sites.append(
            AttentionSite(
                index=index,
                name=node.name or node.output[0],
                op_type=node.op_type,
                domain=node.domain,
                inputs=tuple(node.input),
                output=node.output[0],
                B=_first(q[0], k[0]),
                H=_first(q[1], k[1]),
                Nq=q[2],
                Nk=_first(k[2], v[2]),
                dk=_first(q[3], k[3]),
                dv=v[3],
                dtype=dtype_name(query.elem_type) if query is not None else None,
                has_bias=has_bias,
                bias_is_zero=has_bias and _constant_zero(model, node.input[3]),
                scale=float(attrs.get("scale", 1.0)),
                feature_map=_feature_map(model, values, node.input[1], _first(k[2], v[2])),
            )
        )
    return sites
