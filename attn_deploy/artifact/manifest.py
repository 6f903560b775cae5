"""The manifest: what an artifact is, typed, and its JSON form (``OUT.json`` beside ``OUT.onnx``).

It records what a deployment script needs without parsing ONNX: inputs and outputs with shapes
and dynamic axes, the opset, every attention site with the bytes its N×N score matrix would take,
the precision the producing stages gave the model, how each site is lowered, and provenance
(source, sha256 of source and output, the stages that ran, library versions), and for a detector
which outputs are its boxes, scores and labels.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import onnx

from attn_deploy import __version__
from attn_deploy.artifact.graph import Dim, default_opset, dims_of, dtype_name, graph_inputs
from attn_deploy.artifact.sites import AttentionNode, AttentionSite, attention_sites
from attn_deploy.errors import InputError

FORMAT = "attn-deploy-manifest/1"
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
_LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "onnx-ir", "polygraphy")


def library_versions() -> dict[str, str]:
    """attn-deploy, Python and every installed library the pipeline uses, by package name."""
    versions = {"attn-deploy": __version__, "python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: NumPy dtype name, dims, and which axes are dynamic."""

    name: str
    dtype: str | None
    shape: list[Dim] | None
    dynamic_axes: list[int]

    @classmethod
    def of(cls, vi: onnx.ValueInfoProto) -> TensorSpec:
        shape = dims_of(vi.type)
        dynamic = [i for i, d in enumerate(shape or []) if not isinstance(d, int)]
        return cls(vi.name, dtype_name(vi.type.tensor_type.elem_type), shape, dynamic)


@dataclass(frozen=True)
class SiteRecord(AttentionNode):
    """An attention site as the manifest records it; lowering fields are set by ``lower``."""

    score_matrix_bytes: int | None
    implementation: str = "body"
    op_type: str | None = None
    reason: str | None = None
    block_rows: int | None = None
    #: The grid K's tokens lie on, ``{"h": .., "w": ..}`` of the feature map they were flattened from
    #: (``visualize`` maps query pixels through it); None when the graph does not say (ViT tokens).
    grid: dict[str, int] | None = None

    @classmethod
    def of(cls, site: AttentionSite) -> SiteRecord:
        node = {f.name: getattr(site, f.name) for f in dataclasses.fields(AttentionNode)}
        grid = {"h": site.feature_map[0], "w": site.feature_map[1]} if site.feature_map else None
        return cls(**node, score_matrix_bytes=site.score_matrix_bytes, grid=grid)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = list(self.inputs)
        if self.op_type is None:  # not lowered: keep the exported record as it always was
            for key in ("op_type", "reason", "block_rows"):
                del data[key]
        if self.grid is None:  # older readers and older manifests never had it
            del data["grid"]
        return data


@dataclass(frozen=True)
class AttentionFinding:
    """How export handled one attention: ``routed`` through the op in PyTorch, ``fused`` from the
    exported graph, or left ``plain`` (MatMul/Softmax/MatMul). ``node`` is the FusedAttention node,
    or the Softmax / attention op left alone; ``detail`` the fuse pattern or why it was left;
    ``module`` the qualified name of the PyTorch module it came from (``model.named_modules()``,
    ``""`` for the model itself; None when unknown, as in manifests older than the field)."""

    node: str
    status: Literal["routed", "fused", "plain"]
    detail: str | None = None
    module: str | None = None


@dataclass(frozen=True)
class Lowering:
    """How ``lower`` was asked to lower (per-site choices are in the site records)."""

    target: str
    max_attn_mem: int
    impl: str


@dataclass(frozen=True)
class Manifest:
    """Everything known about one ONNX artifact besides the graph itself."""

    source: str
    exporter: str
    opset: int
    ir_version: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    fused_attention: list[SiteRecord]
    source_sha256: str | None = None
    output_sha256: str | None = None
    export_input_shapes: list[list[Dim]] = field(default_factory=list)
    export_dynamic_axes: list[int] = field(default_factory=list)
    preprocess: dict[str, Any] | None = None
    #: What the producing stages made of the model's arithmetic: ``fp32``, ``fp16`` or ``int8``.
    precision: Precision = "fp32"
    #: The stages that produced the model, in order (``export:dynamo``, ``lower:ort``, ...).
    stages: list[str] = field(default_factory=list)
    lowering: Lowering | None = None
    #: What the producing stages want a person to know (an exporter that failed before another worked, ...).
    notes: list[str] = field(default_factory=list)
    #: What export found of each attention (empty for models not exported by ``export``).
    attention: list[AttentionFinding] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)
    #: A detector's outputs by role: ``{"boxes": NAME, "scores": NAME, "labels": NAME}`` (graph output
    #: names, whatever they are), recorded at export from what the model returns; None: not a detector.
    detection: dict[str, str] | None = None
    #: What the detector keeps, when export found it on the module (torchvision's ``score_thresh`` and
    #: ``detections_per_img``): ``{"score_threshold": T, "max_detections": K or None, "found": WHERE}``.
    detection_selection: dict[str, Any] | None = None

    @classmethod
    def describe(
        cls,
        model: onnx.ModelProto,
        *,
        source: str,
        exporter: str,
        sites: Sequence[AttentionSite] | None = None,
        **fields: Any,
    ) -> Manifest:
        """A manifest for ``model``: I/O and sites read from the graph, the rest from ``fields``."""
        return cls(
            source=source,
            exporter=exporter,
            opset=default_opset(model),
            ir_version=int(model.ir_version),
            inputs=[TensorSpec.of(vi) for vi in graph_inputs(model)],
            outputs=[TensorSpec.of(vi) for vi in model.graph.output],
            fused_attention=[SiteRecord.of(s) for s in (sites if sites is not None else attention_sites(model))],
            **fields,
        )

    def derive(self, model: onnx.ModelProto, *, stage: str, **changes: Any) -> Manifest:
        """The manifest of ``model`` made from this one's by ``stage``: graph facts re-read, provenance kept."""
        fresh = Manifest.describe(model, source=self.source, exporter=self.exporter)
        carried = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        carried.update(
            opset=fresh.opset, ir_version=fresh.ir_version, inputs=fresh.inputs, outputs=fresh.outputs,
            fused_attention=fresh.fused_attention, output_sha256=None, stages=[*self.stages, stage],
            versions=library_versions(),
        )
        carried.update(changes)
        return Manifest(**carried)

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``OUT.json`` (field names are a public format)."""
        return {
            "format": FORMAT,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "output_sha256": self.output_sha256,
            "exporter": self.exporter,
            "opset": self.opset,
            "ir_version": self.ir_version,
            "export_input_shapes": self.export_input_shapes,
            "export_dynamic_axes": self.export_dynamic_axes,
            "preprocess": self.preprocess,
            "precision": self.precision,
            "stages": self.stages,
            "inputs": [dataclasses.asdict(t) for t in self.inputs],
            "outputs": [dataclasses.asdict(t) for t in self.outputs],
            "fused_attention": [r.to_json() for r in self.fused_attention],
            **({"lowering": dataclasses.asdict(self.lowering)} if self.lowering else {}),
            **({"detection": self.detection} if self.detection else {}),
            **({"detection_selection": self.detection_selection} if self.detection_selection else {}),
            "notes": self.notes,
            **({"attention": [dataclasses.asdict(a) for a in self.attention]} if self.attention else {}),
            "versions": self.versions,
        }

    @classmethod
    def from_json(cls, data: object, where: str = "manifest") -> Manifest:
        """Parse what ``to_json`` wrote; ``InputError`` naming ``where`` for anything else."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise InputError(f"{where} is not an attn-deploy manifest (format {found!r}, expected {FORMAT!r}); re-export the model")
        try:
            precision = data.get("precision", "fp32")
            if precision not in PRECISIONS:
                raise ValueError(f"precision {precision!r}")
            lowering = data.get("lowering")
            return cls(
                source=str(data["source"]),
                exporter=str(data["exporter"]),
                opset=int(data["opset"]),
                ir_version=int(data["ir_version"]),
                inputs=[TensorSpec(**t) for t in data["inputs"]],
                outputs=[TensorSpec(**t) for t in data["outputs"]],
                fused_attention=[SiteRecord(**{**r, "inputs": tuple(r["inputs"])}) for r in data["fused_attention"]],
                source_sha256=data.get("source_sha256"),
                output_sha256=data.get("output_sha256"),
                export_input_shapes=list(data.get("export_input_shapes") or []),
                export_dynamic_axes=list(data.get("export_dynamic_axes") or []),
                preprocess=data.get("preprocess"),
                precision=cast(Precision, precision),
                stages=list(data.get("stages") or []),
                lowering=Lowering(**lowering) if lowering else None,
                notes=[str(n) for n in data.get("notes") or []],
                attention=[AttentionFinding(**a) for a in data.get("attention") or []],
                versions=dict(data.get("versions") or {}),
                detection={str(k): str(v) for k, v in data["detection"].items()} if data.get("detection") else None,
                detection_selection=_selection(data.get("detection_selection")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where} is a damaged attn-deploy manifest ({type(e).__name__}: {e}); re-export the model") from None


def _selection(data: object) -> dict[str, Any] | None:
    """A recorded detection selection, its numbers checked (``ValueError``/``TypeError`` when damaged)."""
    if not data:
        return None
    if not isinstance(data, Mapping):
        raise TypeError(f"detection_selection is {type(data).__name__}, not an object")
    limit = data.get("max_detections")
    return {"score_threshold": float(data["score_threshold"]), "max_detections": None if limit is None else int(limit),
            "found": str(data.get("found", ""))}
