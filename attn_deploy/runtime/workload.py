"""What ``check`` and ``bench`` share: resolve SOURCE and ARTIFACTs into inputs and planned runners.

A PyTorch SOURCE with no .onnx ARTIFACT is exported first (into ``work_dir``), so
``attn-deploy check zoo:NAME`` compares PyTorch with ONNX Runtime out of the box.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from attn_deploy.runtime.backends import Planned, Skipped, is_engine, is_onnx, plan_runners, validate_artifacts
from attn_deploy.runtime.base import Runner
from attn_deploy.runtime.inputs import InputSpec, input_specs, read_manifest

Progress = Callable[[str], None]


@dataclass(frozen=True)
class WorkloadOptions:
    backends: tuple[str, ...] = ("torch", "ort", "trt")
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    arch: str | None = None
    unsafe_load: bool = False
    #: Where a PyTorch SOURCE is exported when no .onnx ARTIFACT is given (default: a temp dir).
    work_dir: Path | None = None
    #: Applied to every .onnx ARTIFACT before it runs (``--lower``); returns the path to run.
    transform: Callable[[str], str] | None = None


def ort_lowering(work_dir: Path | None = None) -> Callable[[str], str]:
    """A ``transform`` for ``--lower``: each .onnx ARTIFACT with FusedAttention nodes is lowered for
    ONNX Runtime into ``work_dir`` first; others (already lowered, quantized bodies, no attention) run as given."""
    from attn_deploy.errors import InputError
    from attn_deploy.lower import lower_file

    def lower(path: str) -> str:
        out_dir = work_dir or Path(tempfile.mkdtemp(prefix="attn-deploy-lower-"))
        try:
            return str(lower_file(path, out_dir / (Path(path).stem + ".ort.onnx")).onnx_path)
        except InputError:
            return path

    return lower


@dataclass
class Workload:
    source: str
    artifacts: list[str]
    specs: list[InputSpec]
    output_names: list[str]
    preprocess: dict | None
    planned: list[Planned]
    skipped: list[Skipped]
    is_detector: bool = False


def prepare_workload(source: str, artifacts: list[str], options: WorkloadOptions, progress: Progress = lambda _: None) -> Workload:
    """Load/export what is needed and plan one runner per (backend, artifact); the first is the reference."""
    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import load_model
    from attn_deploy.runtime.ort_runner import OrtRunner
    from attn_deploy.runtime.torch_runner import TorchRunner

    validate_artifacts(source, artifacts)
    artifacts = list(artifacts)
    cache: dict[str, object] = {}

    def loaded_model():  # noqa: ANN202 - loads once, on first use
        if "model" not in cache:
            progress(f"loading {source}")
            cache["model"] = load_model(source, arch=options.arch, unsafe_load=options.unsafe_load)
        return cache["model"]

    source_is_torch = not (is_onnx(source) or is_engine(source))
    if source_is_torch and "ort" in options.backends and not any(is_onnx(a) for a in artifacts):
        work = options.work_dir or Path(tempfile.mkdtemp(prefix="attn-deploy-"))
        progress(f"exporting {source} to ONNX")
        name = Path(source.split(":", 1)[-1]).stem or "model"
        shapes = tuple(options.input_shapes.values())
        exported = export_model(loaded_model(), work / f"{name}.onnx", ExportOptions(input_shapes=shapes))  # type: ignore[arg-type]
        artifacts.insert(0, str(exported.onnx_path))
    if options.transform is not None:
        artifacts = [options.transform(a) if is_onnx(a) else a for a in artifacts]

    onnx_files = [p for p in [source, *artifacts] if is_onnx(p)]
    if onnx_files:
        specs = input_specs(onnx_files[0], options.input_shapes)
        preprocess = (read_manifest(onnx_files[0]) or {}).get("preprocess")
        graph = onnx.load(onnx_files[0], load_external_data=False).graph
        output_names = [o.name for o in graph.output]
    else:
        lm = loaded_model()
        shapes = tuple(options.input_shapes.values()) or lm.input_shapes
        names = lm.input_names or tuple(f"input_{i}" for i in range(len(shapes)))
        specs = [InputSpec(n, tuple(s), np.dtype(np.float32)) for n, s in zip(names, shapes)]
        preprocess, output_names = None, list(lm.output_names)
    if preprocess is None and source_is_torch and "torch" in options.backends:
        preprocess = loaded_model().preprocess

    def make_torch() -> Runner:
        return TorchRunner(loaded_model().module, [s.name for s in specs], output_names)

    planned, skipped = plan_runners(source, artifacts, options.backends, make_torch, OrtRunner)
    is_detector = bool(cache) and getattr(cache["model"], "is_detector", False)
    return Workload(source, artifacts, specs, output_names, preprocess, planned, skipped, is_detector)
