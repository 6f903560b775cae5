"""What ``check`` and ``bench`` share: SOURCE and ARTIFACTs resolved into targets, inputs and planned runners.

Each model is loaded once per workload: every .onnx file is parsed once into an ``Artifact`` (inputs,
outputs, precision, batch limits and the ONNX Runtime session all come from it), and a PyTorch
SOURCE is loaded once, on first use. A PyTorch SOURCE with no .onnx ARTIFACT is exported in memory,
so ``attn-deploy check zoo:NAME`` compares PyTorch with ONNX Runtime out of the box; ``--lower``
lowers in memory too. Nothing is written to disk.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import onnx

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.io import is_engine_path, is_onnx_path, load_artifact
from attn_deploy.errors import InputError
from attn_deploy.runtime.backends import (
    Planned,
    Skipped,
    Target,
    plan_runners,
    validate_paths,
)
from attn_deploy.runtime.base import Runner
from attn_deploy.runtime.inputs import InputSpec, input_specs
from attn_deploy.shapes import InputDecl

if TYPE_CHECKING:
    from torch import nn

    from attn_deploy.export.loading import LoadedModel

Progress = Callable[[str], None]
#: SOURCE: a MODEL spec or .onnx/.engine path, a PyTorch model in memory, or an ONNX model in memory.
Reference: TypeAlias = "str | os.PathLike[str] | Artifact | onnx.ModelProto | LoadedModel | nn.Module"
#: An ARTIFACT: an .onnx or .engine path, or an ONNX model in memory.
Candidate: TypeAlias = str | os.PathLike[str] | Artifact | onnx.ModelProto
#: Applied to every ONNX ARTIFACT before it runs (``--lower``).
Transform: TypeAlias = Callable[[Artifact], Artifact]


@dataclass(frozen=True)
class WorkloadOptions:
    backends: tuple[str, ...] = defaults.BACKENDS
    #: ``{"": shape}`` for a single input, else by input name (``--input-shape``); also the shapes of an ``nn.Module`` SOURCE.
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    arch: str | None = None
    unsafe_load: bool = False
    transform: Transform | None = None
    #: NumPy dtype by input name, as ``input_shapes`` (``--input input_ids:1x128:int64``); else the model's, else float32.
    input_dtypes: Mapping[str, str] = field(default_factory=dict)
    #: ``--backends triton``: the server's URL and the served model's name.
    triton_url: str | None = None
    triton_model: str | None = None


def _triton_target(options: WorkloadOptions) -> list[Target]:
    """The served model as a target when ``triton`` is asked for and both URL and model are given."""
    if options.triton_model is None and options.triton_url is None:
        return []
    if "triton" not in options.backends:
        raise InputError("--triton-url/--triton-model need triton in --backends (e.g. --backends torch,triton)")
    url, model = options.triton_url or defaults.TRITON_URL, options.triton_model
    if not model:
        raise InputError("--backends triton: give --triton-model NAME (the model's name in the repository)")
    # Named by the model's URL: tables shorten it to triton:MODEL.
    return [Target("endpoint", f"{url.rstrip('/')}/v2/models/{model}", endpoint=(url, model))]


def ort_lowering(max_attn_mem: int = defaults.MAX_ATTN_MEM) -> Transform:
    """A ``transform`` for ``--lower``: each ONNX ARTIFACT with FusedAttention nodes is lowered for ONNX
    Runtime in memory; others (already lowered, quantized bodies, no attention) run as given."""

    def lower(artifact: Artifact) -> Artifact:
        from attn_deploy.lower import lower_artifact

        try:
            return lower_artifact(artifact, "ort", max_attn_mem).artifact
        except InputError:
            return artifact

    return lower


@dataclass
class Workload:
    """Resolved SOURCE (``targets[0]``) and ARTIFACTs, their inputs, and the runners to build."""

    source: str
    targets: list[Target]
    specs: list[InputSpec]
    output_names: list[str]
    preprocess: Mapping[str, Any] | None
    planned: list[Planned]
    skipped: list[Skipped]
    options: WorkloadOptions
    is_detector: bool = False
    #: A detector's outputs by role (``{"boxes": NAME, ...}``), from the first ONNX model's manifest.
    detection: Mapping[str, str] | None = None
    #: What the detector keeps (``check.detection.DetectionSelection`` as JSON, with ``found``): read
    #: from the PyTorch SOURCE when it is loaded, else from the first ONNX model's manifest.
    detection_selection: Mapping[str, Any] | None = None
    #: What the PyTorch SOURCE's outputs are called, in its order (see ``_torch_output_names``).
    torch_output_names: list[str] = field(default_factory=list)
    #: Warnings for the report (a run near this machine's memory: ``size_guard``).
    notes: list[str] = field(default_factory=list)
    #: The PyTorch SOURCE exported in memory, when no .onnx ARTIFACT was given (also among ``targets``).
    exported: Target | None = None

    def make_runner(self, planned: Planned) -> Runner:
        """A runner for ``planned`` fed this workload's inputs; use it as a context manager.

        Every runner names its outputs itself (PyTorch by the model's names), so the gate matches
        outputs by name, never by position.
        """
        names = self.torch_output_names if planned.backend.runs == "pytorch" else self.output_names
        return planned.make([s.name for s in self.specs], names)


def _torch_target(name: str, load: Callable[[], LoadedModel]) -> Target:
    cache: list[LoadedModel] = []

    def model() -> LoadedModel:
        if not cache:
            cache.append(load())
        return cache[0]

    return Target("pytorch", name, model=model)


def _module_model(module: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> LoadedModel:
    from attn_deploy.export.loading import LoadedModel

    if not shapes:
        raise InputError(f"give the input shapes of the {type(module).__name__} (WorkloadOptions(input_shapes={{'': (1, 3, 224, 224)}}))")
    names = tuple(n for n in shapes if n)
    return LoadedModel(module=module, source=type(module).__name__, input_shapes=tuple(shapes.values()),
                       input_names=names if len(names) == len(shapes) else ())


def _onnx_target(model: Artifact | onnx.ModelProto | str) -> Target:
    if isinstance(model, str):
        return Target("onnx", model, artifact=load_artifact(model))
    if isinstance(model, onnx.ModelProto):
        model = Artifact.describe(model, source="<in memory>", exporter="unknown")
    name = str(model.path) if model.path is not None else f"{model.name}.onnx"
    return Target("onnx", name, artifact=model)


def resolve_source(source: Reference, options: WorkloadOptions, progress: Progress) -> Target:
    """SOURCE as a target; a PyTorch MODEL spec is loaded on first use, once.

    torch is not imported for ONNX and engine sources: a LoadedModel or an nn.Module exists only
    once its module (and torch) has been imported, so ``sys.modules`` says whether to look.
    """
    loading, torch_nn = sys.modules.get("attn_deploy.export.loading"), sys.modules.get("torch.nn")
    if loading is not None and isinstance(source, loading.LoadedModel):
        loaded_source = source
        return _torch_target(source.source, lambda: loaded_source)
    if torch_nn is not None and isinstance(source, torch_nn.Module):
        loaded = _module_model(source, options.input_shapes)
        return _torch_target(loaded.source, lambda: loaded)
    if isinstance(source, (Artifact, onnx.ModelProto)):
        return _onnx_target(source)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"SOURCE is a {type(source).__name__}: pass a path, a MODEL spec, an Artifact or an nn.Module")
    spec = os.fspath(source)
    if is_onnx_path(spec):
        return _onnx_target(spec)
    if is_engine_path(spec):
        return Target("engine", spec, engine=Path(spec))

    def load() -> LoadedModel:
        from attn_deploy.export.loading import load_model

        progress(f"loading {spec}")
        return load_model(spec, arch=options.arch, unsafe_load=options.unsafe_load)

    return _torch_target(spec, load)


def resolve_candidate(candidate: Candidate) -> Target:
    """An ARTIFACT as a target: an .onnx file parsed once into an Artifact, an engine by path."""
    if isinstance(candidate, (Artifact, onnx.ModelProto)):
        return _onnx_target(candidate)
    path = os.fspath(candidate)
    return Target("engine", path, engine=Path(path)) if is_engine_path(path) else _onnx_target(path)


def _export(source: Target, options: WorkloadOptions, progress: Progress, exporter: str | None = None, opset: int | None = None) -> Target:
    """The PyTorch SOURCE exported in memory (no file), by ``exporter`` at ``opset`` when given."""
    from attn_deploy.export import export_artifact
    from attn_deploy.export.exporter import options_for_inputs

    assert source.model is not None
    loaded = source.model()
    progress(f"exporting {source.name} to ONNX")
    decls = [InputDecl(n, s, options.input_dtypes.get(n)) for n, s in options.input_shapes.items()]
    export_options = options_for_inputs(decls, loaded)
    if exporter is not None:
        export_options = dataclasses.replace(export_options, exporter=exporter)  # type: ignore[arg-type]
    if opset is not None:
        export_options = dataclasses.replace(export_options, opset=opset)
    artifact = export_artifact(loaded, export_options).artifact
    return Target("onnx", f"{Path(source.name.split(':', 1)[-1]).stem or 'model'}.onnx", artifact=artifact)


def export_reference(work: Workload, like: Artifact | None = None, progress: Progress = lambda _: None) -> Target:
    """The workload's PyTorch SOURCE exported in memory with its input shapes, by the exporter and at
    the opset ``like`` was exported with (so its tensors have the same names); the workload's own
    in-memory export when it made one the same way."""
    exporter = like.manifest.exporter.split(" ", 1)[0] if like is not None else None
    exporter = exporter if exporter in ("dynamo", "torchscript") else None
    opset = like.manifest.opset if like is not None else None
    made = work.exported
    if made is not None and made.artifact is not None and (exporter is None or made.artifact.manifest.exporter == exporter):
        return made
    return _export(work.targets[0], work.options, progress, exporter, opset)


def _transformed(target: Target, transform: Transform) -> Target:
    artifact = transform(target.artifact) if target.artifact is not None else None
    if artifact is None or artifact is target.artifact:
        return target
    tag = artifact.manifest.lowering.target if artifact.manifest.lowering else "out"
    path = Path(target.name)
    return Target("onnx", str(path.with_name(f"{path.stem}.{tag}.onnx")), artifact=artifact)


def _specs_from_model(loaded: LoadedModel, options: WorkloadOptions) -> list[InputSpec]:
    shapes = tuple(options.input_shapes.values()) or loaded.input_shapes
    named = tuple(n for n in options.input_shapes if n)
    names = loaded.input_names or (named if len(named) == len(shapes) else tuple(f"input_{i}" for i in range(len(shapes))))
    own = loaded.input_dtypes if len(loaded.input_dtypes) == len(shapes) else ("float32",) * len(shapes)
    given = [options.input_dtypes.get(n) for n in options.input_shapes] or [None] * len(shapes)
    dtypes = [g or o for g, o in zip(given, own)]
    return [InputSpec(n, tuple(s), np.dtype(d), loaded.embedding_rows) for n, s, d in zip(names, shapes, dtypes)]


def _torch_output_names(loaded: LoadedModel, first_onnx: Artifact | None, output_names: list[str]) -> list[str]:
    """The names of the PyTorch model's outputs: its own (a zoo entry's); else the ONNX model's when the
    order is known (one output, or a manifest of this tool's, so the export's order); else none."""
    if loaded.output_names:
        return list(loaded.output_names)
    if first_onnx is None or len(output_names) == 1 or first_onnx.manifest.stages:
        return output_names
    return []


def _guard_memory(planned: Sequence[Planned], loaded: LoadedModel | None, specs: Sequence[InputSpec]) -> list[str]:
    """Refuse (``InputError``) a runner whose estimated memory exceeds what is available; warnings returned."""
    from attn_deploy.runtime.size_guard import eager_peak_bytes, guard, ort_peak_bytes

    shapes = "x".join(str(d) for d in specs[0].shape) if specs else "?"
    warnings: list[str] = []
    for p in planned:
        if p.backend.runs == "pytorch" and loaded is not None:
            guard(eager_peak_bytes(loaded.module, [s.shape for s in specs]), f"running {p.target.name} in PyTorch at {shapes}",
                  "use a smaller --input-shape, or leave PyTorch out (--backends ort) and run a lowered model", warnings.append)
        elif p.target.artifact is not None:
            guard(ort_peak_bytes(p.target.artifact), f"running {p.target.name}'s attention in ONNX Runtime",
                  "lower it first (`attn-deploy lower`, or --lower) or use a smaller --input-shape", warnings.append)
    return warnings


def prepare_workload(
    source: Reference, artifacts: Sequence[Candidate], options: WorkloadOptions, progress: Progress = lambda _: None
) -> Workload:
    """Resolve SOURCE and ARTIFACTs (each loaded once) and plan one runner per (backend, target); the first is the reference."""
    validate_paths([os.fspath(a) for a in artifacts if isinstance(a, (str, os.PathLike))],
                   os.fspath(source) if isinstance(source, (str, os.PathLike)) else None)
    served = _triton_target(options)
    reference = resolve_source(source, options, progress)
    candidates = [resolve_candidate(a) for a in artifacts]
    export = reference.kind == "pytorch" and "ort" in options.backends and not any(c.kind == "onnx" for c in candidates)
    exported = _export(reference, options, progress) if export else None
    if exported is not None:
        candidates.insert(0, exported)
    if options.transform is not None:
        candidates = [_transformed(c, options.transform) for c in candidates]
    targets = [reference, *candidates, *served]

    first_onnx = next((t.artifact for t in targets if t.artifact is not None), None)
    needs_model = export or first_onnx is None or "torch" in options.backends
    loaded = reference.model() if reference.model is not None and needs_model else None
    if first_onnx is not None:
        specs = input_specs(first_onnx, options.input_shapes)
        preprocess = first_onnx.manifest.preprocess
        output_names = [o.name for o in first_onnx.proto.graph.output]
    else:
        assert loaded is not None, "a workload without ONNX has a PyTorch SOURCE"
        specs, preprocess, output_names = _specs_from_model(loaded, options), None, list(loaded.output_names)
    if preprocess is None and loaded is not None:
        preprocess = loaded.preprocess

    planned, skipped = plan_runners(targets, options.backends)
    detection = first_onnx.manifest.detection if first_onnx is not None else None
    is_detector = bool(detection) or (loaded is not None and loaded.is_detector)
    selection = _detection_selection(loaded, first_onnx) if is_detector else None
    torch_names = _torch_output_names(loaded, first_onnx, output_names) if loaded is not None else []
    notes = _guard_memory(planned, loaded, specs)
    return Workload(reference.name, targets, specs, output_names, preprocess, planned, skipped, options, is_detector, detection,
                    selection, torch_names, notes, exported)


def _detection_selection(loaded: LoadedModel | None, first_onnx: Artifact | None) -> Mapping[str, Any] | None:
    """What the detector keeps: from the live PyTorch module when loaded, else as export recorded it."""
    if loaded is not None:
        from attn_deploy.export.detector import detection_selection  # imports torch, loaded already

        found = detection_selection(loaded.module)
        if found is not None:
            return {**found, "found": f"the PyTorch model's {found['found']}"}
    recorded = first_onnx.manifest.detection_selection if first_onnx is not None else None
    return {**recorded, "found": f"the manifest ({recorded.get('found')})"} if recorded else None
