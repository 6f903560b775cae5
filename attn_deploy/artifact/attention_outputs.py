"""The attentions of a model named by their OUTPUT TENSOR, the key ``check --per-attention`` matches them by.

``lower``, ``fp16`` and ``quantize`` keep an attention's output tensor name when they replace its
FusedAttention node by an ORT op or its body, so the same name finds the same attention in every
stage's model; the manifest's findings add the PyTorch module it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attn_deploy.artifact.artifact import Artifact


@dataclass(frozen=True)
class AttentionPoint:
    """One attention: its output tensor (the key across models), node, PyTorch module and how export found it."""

    tensor: str
    node: str
    module: str | None = None
    status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "node": self.node, "module": self.module, "status": self.status}

    @property
    def where(self) -> str:
        """``node (module blocks.0)`` for messages."""
        return self.node + (f" (module {self.module or '<model>'})" if self.module is not None else "")


def onnx_points(artifact: Artifact) -> list[AttentionPoint]:
    """``artifact``'s attentions in graph order: the site records (manifest and graph) whose output tensor
    a node of the graph still produces, each with the module and status export recorded."""
    producer = {out: i for i, node in enumerate(artifact.proto.graph.node) for out in node.output}
    findings = {f.node: f for f in artifact.manifest.attention}
    seen: dict[str, tuple[int, AttentionPoint]] = {}
    for record in (*artifact.manifest.fused_attention, *artifact.sites):
        if record.output in producer and record.output not in seen:
            finding = findings.get(record.name)
            point = AttentionPoint(record.output, record.name, finding.module if finding else None, finding.status if finding else None)
            seen[record.output] = (producer[record.output], point)
    return [p for _, p in sorted(seen.values(), key=lambda item: item[0])]


def engine_points(report: dict[str, Any]) -> list[AttentionPoint]:
    """The attentions an engine keeps as outputs, from its build report (``build-trt --debug-attention``)."""
    return [AttentionPoint(str(a["tensor"]), str(a["node"]), a.get("module"), a.get("status")) for a in report.get("debug_attention") or []]


def with_attention_outputs(artifact: Artifact, tensors: Sequence[str]) -> Artifact:
    """A copy of ``artifact`` whose graph also outputs ``tensors`` (and nothing else new); ``artifact`` is unchanged.

    Shapes are inferred first, so each new output is typed (fp16 where the model computes in fp16)."""
    import onnx
    import onnx_ir as ir

    try:
        proto = onnx.shape_inference.infer_shapes(artifact.proto)
    except Exception:  # noqa: BLE001 - inference is best effort; ONNX Runtime types what it runs
        proto = artifact.proto
    model = ir.serde.deserialize_model(proto)
    values = {v.name: v for node in model.graph for v in node.outputs}
    present = {o.name for o in model.graph.outputs}
    for name in tensors:
        if name not in present:
            model.graph.outputs.append(values[name])
    return Artifact(model, artifact.manifest, path=None)
