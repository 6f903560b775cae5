"""Attention sites: every FusedAttention node (exported or lowered) with the dimensions ONNX can see.

One record per node, used by the per-target choice (``choice.py``), by ``inspect`` and by the
manifest. A dimension is an ``int`` when static, a symbol (``str``) or ``None`` when dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from attn_deploy.export.manifest import dims_product
from attn_deploy.ops.contract import DOMAIN, OP_TYPE

#: Domain of the nodes ``lower --target ort`` writes; each op type is one implementation.
ORT_DOMAIN = "attn_deploy.ort"
Dim = int | str | None


@dataclass(frozen=True)
class AttentionSite:
    """One attention node: ``Q [B,H,Nq,dk]``, ``K [B,H,Nk,dk]``, ``V [B,H,Nk,dv]``."""

    index: int  # position in graph.node
    name: str
    op_type: str
    domain: str
    B: Dim
    H: Dim
    Nq: Dim
    Nk: Dim
    dk: Dim
    dv: Dim
    dtype: str | None  # numpy name of Q's element type, None when unknown
    has_bias: bool
    bias_is_zero: bool  # a constant all-zero bias (finalize adds one to nodes without bias)
    scale: float

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
        n, d = self.score_elements, dims_product([self.dk])
        return None if n is None or d is None or not isinstance(self.dv, int) else 2 * n * (d + self.dv)

    @property
    def real_bias(self) -> bool:
        return self.has_bias and not self.bias_is_zero


def is_attention_node(node: onnx.NodeProto) -> bool:
    return (node.domain == DOMAIN and node.op_type == OP_TYPE) or node.domain == ORT_DOMAIN


def _typed_values(model: onnx.ModelProto) -> dict[str, tuple[int, list[Dim] | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - best effort; the exporter's value_info is the fallback
        inferred = model
    graph = inferred.graph
    values: dict[str, tuple[int, list[Dim] | None]] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        tt = vi.type.tensor_type
        dims: list[Dim] | None = None
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        values[vi.name] = (tt.elem_type, dims)
    for init in graph.initializer:
        values[init.name] = (init.data_type, list(init.dims))
    return values


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


def attention_sites(model: onnx.ModelProto) -> list[AttentionSite]:
    """Every FusedAttention node of the main graph (exported or already lowered), in graph order."""
    values = _typed_values(model)
    sites = []
    for index, node in enumerate(model.graph.node):
        if not is_attention_node(node):
            continue
        shapes = []
        for name in node.input[:3]:
            dims = values.get(name, (0, None))[1]
            shapes.append(dims if dims is not None and len(dims) == 4 else [None] * 4)
        q, k, v = shapes
        elem = values.get(node.input[0], (0, None))[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        has_bias = len(node.input) > 3 and bool(node.input[3])
        sites.append(
            AttentionSite(
                index=index,
                name=node.name or node.output[0],
                op_type=node.op_type,
                domain=node.domain,
                B=q[0] if q[0] is not None else k[0],
                H=q[1] if q[1] is not None else k[1],
                Nq=q[2],
                Nk=k[2] if k[2] is not None else v[2],
                dk=q[3] if q[3] is not None else k[3],
                dv=v[3],
                dtype=onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else None,
                has_bias=has_bias,
                bias_is_zero=has_bias and _constant_zero(model, node.input[3]),
                scale=float(attrs.get("scale", 1.0)),
            )
        )
    return sites
