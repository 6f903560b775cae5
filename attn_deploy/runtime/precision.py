"""The precision of a model a backend runs: what chooses its tolerance preset in ``check --precision auto``.

A gate never takes its tolerance from the file it judges. So a looser preset than fp32 comes only
from what produced the model: the manifest a stage of this tool wrote (checked against the model's
sha256 by the one loader, ``artifact.io.load_artifact``), or an engine's build report whose
``engine_sha256`` is the engine's. A model without either gets the strict fp32 preset and a note,
even where its graph looks quantized or float16: a decoy initializer or an unused int8 op must not
loosen the gate. ``--precision`` is how a user says otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.manifest import Precision
from attn_deploy.runtime.trt_runner import build_report

_INT8_OPS = frozenset(
    {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
)


@dataclass(frozen=True)
class PrecisionChoice:
    """The preset a target gets, and a note for the report when it is not what the file suggests."""

    precision: Precision
    note: str | None = None


def graph_precision(model: onnx.ModelProto) -> Precision:
    """What the graph looks like: ``int8`` for integer matmul/conv ops, ``fp16`` for float16 tensors, else ``fp32``."""
    graph = model.graph
    if any(n.op_type in _INT8_OPS for n in graph.node):
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == fp16 for i in graph.initializer) or any(
        v.type.tensor_type.elem_type == fp16 for v in (*graph.input, *graph.value_info)
    ):
        return "fp16"
    return "fp32"


def artifact_precision(artifact: Artifact, label: str = "") -> PrecisionChoice:
    """The precision a stage recorded in the manifest; fp32 (with a note) when no stage did."""
    manifest = artifact.manifest
    if manifest.stages:
        return PrecisionChoice(manifest.precision)
    looks = graph_precision(artifact.proto)
    why = "; ".join(manifest.notes) or "no attn-deploy manifest"
    if looks == "fp32":
        return PrecisionChoice("fp32", None if manifest.notes == [] else f"{label or artifact.name}: {why}")
    return PrecisionChoice(
        "fp32", f"{label or artifact.name}: {why}, so the strict fp32 preset applies although the graph looks {looks} (pass --precision {looks} to loosen it)"
    )


def engine_precision(engine_path: str | Path) -> PrecisionChoice:
    """``fp16`` when the engine's build report says it was built with ``--fp16`` and is this engine's."""
    report = build_report(engine_path)
    if not report:
        return PrecisionChoice("fp32", f"{engine_path}: no build report beside it, so the strict fp32 preset applies")
    if report.get("engine_sha256") != hashlib.sha256(Path(engine_path).read_bytes()).hexdigest():
        return PrecisionChoice("fp32", f"{engine_path}: its build report is for another engine (sha256), so the strict fp32 preset applies")
    return PrecisionChoice("fp16" if report.get("precision") == "float16" else "fp32")
