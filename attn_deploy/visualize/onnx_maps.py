"""Attention rows from ONNX Runtime: a debug lowering that adds, for chosen FusedAttention nodes,
the rows of softmax(scale·Q·Kᵀ + bias) for query indices fed at run time as extra graph outputs.

Per node ``i``: an int64 input ``attn_deploy_rows_i [R]`` picks the query rows of Q (Gather), which
are multiplied by Kᵀ, scaled, given the matching bias rows (row 0 of a bias broadcast over queries)
and softmaxed in float32: the output ``attn_deploy_probs_i [B, H, R, Nk]`` costs O(R·Nk), never
O(Nq·Nk). The node's own output is made a graph output too (``attn_deploy_out_i``), so salient
query points can be found from ONNX Runtime alone. The rest of the model is lowered as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.errors import InputError

if TYPE_CHECKING:
    from attn_deploy.runtime.ort_runner import OrtRunner

ROWS = "attn_deploy_rows_{}"
PROBS = "attn_deploy_probs_{}"
OUT = "attn_deploy_out_{}"


@dataclass(frozen=True)
class DebugModel:
    """The lowered model with rows outputs, and the site indices (in ``attention_sites`` order) it covers."""

    artifact: Artifact
    sites: tuple[int, ...]

    def runner(self) -> OrtRunner:
        """An ONNX Runtime runner for the model (use as a context manager)."""
        from attn_deploy.runtime.ort_runner import OrtRunner

        return OrtRunner(self.artifact, spinning=False)


def add_probability_outputs(artifact: Artifact, sites: Sequence[int]) -> Artifact:
    """``artifact`` with the rows inputs and outputs above for the attention ``sites`` (graph-order indices)."""
    import onnx_ir as ir

    model = ir.serde.deserialize_model(artifact.proto)
    graph = model.graph
    nodes = [n for n in graph if n.op_type == "FusedAttention" and n.domain == "attn_deploy"]
    if len(nodes) != len(artifact.sites) or any(s.op_type != "FusedAttention" for s in artifact.sites):
        raise InputError(f"{artifact.name} has lowered attention nodes; give visualize the exported (or fused) model, not a lowered one")
    opset = model.opset_imports.get("", 18)
    if opset < 15:
        raise InputError(f"{artifact.name} has opset {opset}; visualize needs 15 or newer (re-export with --opset 18)")
    for i in sites:
        node = nodes[i]
        q, k = node.inputs[0], node.inputs[1]
        bias = node.inputs[3] if len(node.inputs) > 3 else None
        assert q is not None and k is not None
        rows = ir.Value(name=ROWS.format(i), type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([f"rows_{i}"]))
        graph.inputs.append(rows)
        scale = node.attributes["scale"].as_float()
        new: list[ir.Node] = []

        def add(op: str, inputs: Sequence[ir.Value | None], **attrs: Any) -> ir.Value:
            made = ir.node(op, list(inputs), attributes=attrs, name=f"{node.name}_rows_{op}_{len(new)}")
            new.append(made)
            return made.outputs[0]

        f32 = ir.DataType.FLOAT.value
        q_rows = add("Cast", [add("Gather", [q, rows], axis=2)], to=f32)
        keys = add("Transpose", [add("Cast", [k], to=f32)], perm=[0, 1, 3, 2])
        scores = add("Mul", [add("MatMul", [q_rows, keys]), add("Constant", [], value=ir.tensor(np.array(scale, np.float32)))])
        if bias is not None and bias.name and (bias.shape is None or len(bias.shape) >= 2):
            # Min(rows, Nq_bias - 1): the rows asked for, or row 0 of a bias broadcast over queries.
            last = add("Sub", [add("Shape", [bias], start=-2, end=-1), add("Constant", [], value=ir.tensor(np.array([1], np.int64)))])
            picked = add("Gather", [add("Cast", [bias], to=f32), add("Min", [rows, last])], axis=-2)
            scores = add("Add", [scores, picked])
        elif bias is not None and bias.name:
            scores = add("Add", [scores, add("Cast", [bias], to=f32)])
        probs = add("Softmax", [scores], axis=-1)
        probs.name = PROBS.format(i)
        out = add("Identity", [node.outputs[0]])
        out.name = OUT.format(i)
        graph.insert_after(node, new)
        graph.outputs.extend([probs, out])
    return artifact.evolve(model, stage="visualize:debug")


def debug_model(artifact: Artifact, sites: Sequence[int]) -> DebugModel:
    """``add_probability_outputs`` then ``api.lower`` for ONNX Runtime."""
    from attn_deploy import api

    return DebugModel(api.lower(add_probability_outputs(artifact, sites)).artifact, tuple(sites))


def run_debug(
    model: DebugModel, runner: OrtRunner, feeds: Mapping[str, np.ndarray], rows: Mapping[int, Sequence[int]]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{site: (probs [B, H, R, Nk], attention output [B, H, Nq, dv])}`` for ``rows`` per site (default: row 0);
    ``runner`` runs ``model.artifact``."""
    extra = {ROWS.format(i): np.asarray(rows.get(i, [0]), np.int64) for i in model.sites}
    outputs = runner.infer({**feeds, **extra})
    return {i: (np.asarray(outputs[PROBS.format(i)], np.float64), np.asarray(outputs[OUT.format(i)])) for i in model.sites}
