"""After either exporter: attach the FusedAttention body and make the file portable and reproducible."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from attn_deploy.artifact.graph import IR_VERSION, default_opset, fused_attention_nodes
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION
from attn_deploy.ops.onnx_body import make_function

#: The all-zero bias given to nodes without one when other nodes of the model pass a bias.
ZERO_BIAS = "attn_deploy_zero_bias"


def attach_fused_attention_function(model: onnx.ModelProto) -> None:
    """Give the model a FusedAttention FunctionProto matching how its nodes call it (in place).

    All nodes share one function, so if some pass ``bias`` and some do not, the latter get a
    scalar zero bias (ONNX Runtime rejects a body that reads an absent optional input).
    """
    nodes = fused_attention_nodes(model)
    kept = [f for f in model.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del model.functions[:]
    model.functions.extend(kept)
    if not nodes:
        return
    with_bias = any(len(n.input) > 3 and n.input[3] for n in nodes)
    if with_bias:
        needs_zero = False
        for n in nodes:
            if len(n.input) < 4 or not n.input[3]:
                del n.input[3:]
                n.input.append(ZERO_BIAS)
                needs_zero = True
        if needs_zero and not any(i.name == ZERO_BIAS for i in model.graph.initializer):
            model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), ZERO_BIAS))
    model.functions.append(make_function(default_opset(model), with_bias=with_bias))
    if not any(imp.domain == DOMAIN for imp in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))


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
