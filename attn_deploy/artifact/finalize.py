"""After either exporter: attach the FusedAttention body and make the file portable and reproducible."""

from __future__ import annotations

import onnx

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.ops.bodies import attach_fused_attention_function


def _strip_graph(graph: onnx.GraphProto) -> None:
    graph.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _strip_graph(attr.g)
            for g in attr.graphs:
                _strip_graph(g)
    for vi in (*graph.input, *graph.output, *graph.value_info):
        del vi.metadata_props[:]
    for init in graph.initializer:
        del init.metadata_props[:]


def finalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Attach the body, pin the IR version, drop exporter metadata (source paths, stack traces).

    Dropping metadata is what makes two exports of the same model byte-identical.
    """
    attach_fused_attention_function(model)
    model.ir_version = IR_VERSION
    del model.metadata_props[:]
    model.doc_string = ""
    _strip_graph(model.graph)
    return model
