"""Float-to-float preparation before ``quantize_dynamic``: projections into quantizable MatMuls."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
import onnx_ir as ir

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.quantize.conv_to_matmul import convs_to_matmul
from attn_deploy.quantize.gemm_to_matmul import gemms_to_matmul


@dataclass
class Preparation:
    """What the passes changed: MatMuls made from 1×1 Convs (with the Convs merged) and from Gemms."""

    conv_matmuls: list[tuple[str, list[str]]] = field(default_factory=list)
    gemm_matmuls: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "convs_to_matmul": [{"matmul": m, "convs": convs} for m, convs in self.conv_matmuls],
            "gemms_to_matmul": self.gemm_matmuls,
        }


def drop_unused_initializers(graph: ir.Graph) -> None:
    """Drop initializers and Constant nodes nothing reads (the weights and targets the passes replaced).

    Not onnx-ir's ``RemoveUnusedNodesPass``: it also edits function bodies and drops the empty
    optional input of FusedAttention's ``Loop``, which ONNX Runtime then rejects.
    """
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            del graph.initializers[name]
    for node in list(graph):  # the TorchScript exporter's Reshape targets are Constant nodes
        if node.op_type == "Constant" and node.domain == "" and not node.outputs[0].uses() and not node.outputs[0].is_graph_output():
            graph.remove(node)


def prepare(model: onnx.ModelProto, *, separate_query_key: bool = False) -> tuple[onnx.ModelProto, Preparation]:
    """Return a float model computing the same outputs with 1×1 Conv projections and Gemms as MatMul.

    ``separate_query_key``: give the Q/K projections their own MatMul (see ``convs_to_matmul``).
    """
    ir_model = ir.from_proto(model)
    rewritten = convs_to_matmul(ir_model, separate_query_key=separate_query_key)
    summary = Preparation(rewritten.merged, gemms_to_matmul(ir_model))
    drop_unused_initializers(ir_model.graph)
    prepared = ir.to_proto(ir_model)
    prepared.ir_version = IR_VERSION
    return prepared, summary
