"""The manifest written beside every exported model (``OUT.json``).

It records what a deployment script needs without parsing ONNX: inputs and outputs with shapes and
dynamic axes, the opset, every FusedAttention node with its attention dimensions and the bytes
its N×N score matrix would take if materialised, library versions, and sha256 of source and output.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping
from typing import Any

import onnx

from attn_deploy import __version__
from attn_deploy.export.finalize import default_opset, fused_attention_nodes

Dim = int | str | None
_LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "onnx-ir", "polygraphy")


def library_versions() -> dict[str, str]:
    versions = {"attn-deploy": __version__, "python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _dims(vi_type: onnx.TypeProto) -> list[Dim] | None:
    if not vi_type.tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in vi_type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _io(values: Any) -> list[dict[str, Any]]:
    out = []
    for vi in values:
        shape = _dims(vi.type)
        out.append(
            {
                "name": vi.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
                if vi.type.tensor_type.elem_type
                else None,
                "shape": shape,
                "dynamic_axes": [i for i, d in enumerate(shape or []) if not isinstance(d, int)],
            }
        )
    return out


def value_shapes(model: onnx.ModelProto) -> dict[str, list[Dim] | None]:
    """Shapes of every value ONNX shape inference can see (exporter value_info included)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort; the exporter's value_info is the fallback
        inferred = model
    graph = inferred.graph
    shapes: dict[str, list[Dim] | None] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        shapes[vi.name] = _dims(vi.type)
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def dims_product(dims: list[Dim]) -> int | None:
    """Product of the dims, or None when any is symbolic or unknown."""
    total = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        total *= d
    return total


def attention_nodes_info(
    model: onnx.ModelProto, implementations: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One record per FusedAttention node: B, H, Nq, Nk, dk, dv (int, or a symbol when dynamic).

    ``implementation`` is ``body`` (the exported function) unless ``implementations`` (node name ->
    fields, from ``attn_deploy.lower``) says what the node was lowered to.
    """
    shapes = value_shapes(model)
    records = []
    for node in fused_attention_nodes(model):
        q, k, v = (shapes.get(name) or [None] * 4 for name in node.input[:3])
        q, k, v = (s if len(s) == 4 else [None] * 4 for s in (q, k, v))
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        dims = {"B": q[0], "H": q[1], "Nq": q[2], "Nk": k[2], "dk": q[3], "dv": v[3]}
        n_scores = dims_product([q[0], q[1], q[2], k[2]])
        records.append(
            {
                "name": node.name,
                "inputs": list(node.input),
                "output": node.output[0],
                **dims,
                "scale": float(attrs.get("scale", 1.0)),
                "has_bias": len(node.input) > 3 and bool(node.input[3]),
                "score_matrix_bytes": None if n_scores is None else n_scores * 4,
                "implementation": "body",
                **(implementations or {}).get(node.name, {}),
            }
        )
    return records


def build_manifest(
    model: onnx.ModelProto,
    *,
    source: str,
    source_sha256: str | None,
    output_sha256: str,
    exporter: str,
    input_shapes: list[list[int]],
    dynamic_axes: list[int],
    preprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": "attn-deploy-manifest/1",
        "source": source,
        "source_sha256": source_sha256,
        "output_sha256": output_sha256,
        "exporter": exporter,
        "opset": default_opset(model),
        "ir_version": model.ir_version,
        "export_input_shapes": input_shapes,
        "export_dynamic_axes": dynamic_axes,
        "preprocess": preprocess,
        "inputs": _io(model.graph.input),
        "outputs": _io(model.graph.output),
        "fused_attention": attention_nodes_info(model),
        "versions": library_versions(),
    }
