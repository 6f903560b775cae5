"""The precision of a model a backend runs: what chooses its tolerance preset in ``check``.

An ONNX Artifact has the precision its manifest records (the stages that made it set it: ``--fp16``,
``quantize``). A model with no manifest (an .onnx from elsewhere, a ModelProto in memory) has it read
off its graph. An engine has the precision its build report records.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.manifest import Precision
from attn_deploy.runtime.trt_runner import build_report

_INT8_OPS = frozenset(
    {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
)


def graph_precision(model: onnx.ModelProto) -> Precision:
    """``int8`` for integer matmul/conv ops, ``fp16`` for float16 weights or activations, else ``fp32``."""
    graph = model.graph
    if any(n.op_type in _INT8_OPS for n in graph.node):
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == fp16 for i in graph.initializer) or any(
        v.type.tensor_type.elem_type == fp16 for v in (*graph.input, *graph.value_info)
    ):
        return "fp16"
    return "fp32"


def artifact_precision(artifact: Artifact) -> Precision:
    """The manifest's precision when a stage wrote the manifest, else the graph's."""
    if artifact.manifest.stages:
        return artifact.manifest.precision
    return graph_precision(artifact.proto)


def engine_precision(engine_path: str | Path) -> Precision:
    """``fp16`` when the engine was built with ``--fp16`` (its build report says so), else ``fp32``."""
    return "fp16" if build_report(engine_path).get("precision") == "float16" else "fp32"
