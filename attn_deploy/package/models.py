"""Which Triton models the artifacts make, with the I/O each one serves.

An .onnx artifact makes an ``onnxruntime`` model (and, with ``python_backend``, a ``python`` model
that runs the same file through ONNX Runtime); an engine makes a ``tensorrt`` model, whose I/O comes
from its build report (``ENGINE.json``) and the ONNX model it was built from. Where the manifest
records image preprocessing, each served model M also gets ``M-preprocess`` (``preprocess.py``'s
ONNX model) and ``M-ensemble`` (image -> M-preprocess -> M). Names are checked
here, before any file is read twice or written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import onnx

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.fileio import sha256_file
from attn_deploy.artifact.graph import Dim
from attn_deploy.artifact.io import engine_report_path, is_engine_path, is_onnx_path, load_artifact, read_json
from attn_deploy.artifact.manifest import TensorSpec
from attn_deploy.errors import InputError
from attn_deploy.package.batching import Preferred, measured_files, preferred_batches, read_bench_report
from attn_deploy.package.preprocess import IMAGE, image_input, image_spec, output_spec, preprocessing_model

TritonBackend = Literal["onnxruntime", "tensorrt", "python", "ensemble"]
#: A Triton model name is a folder name in the repository and a path segment of its URLs.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: Tensor names travel in JSON and in config.pbtxt; Triton reserves a leading ``__``.
_TENSOR_NAME = re.compile(r"[A-Za-z0-9_][\x21-\x7e]{0,255}")
PYTHON_SUFFIX = "-python"
PREPROCESS_SUFFIX = "-preprocess"
ENSEMBLE_SUFFIX = "-ensemble"


@dataclass(frozen=True)
class PackageOptions:
    """What ``package --triton`` was asked for; ``max_batch_size`` None: 8 for a dynamic batch axis, else 0."""

    names: tuple[str, ...] = ()
    python_backend: bool = False
    instances: int = defaults.TRITON_INSTANCES
    gpu: bool = False
    max_batch_size: int | None = None
    max_queue_delay_us: int = defaults.TRITON_MAX_QUEUE_DELAY_US
    plugin: Path | None = None
    force: bool = False
    #: An ensemble with the manifest's image preprocessing in front; None: wherever the manifest records it.
    ensemble: bool | None = None
    #: The target GPU's compute capability (``9.0``): an engine built for others is refused.
    compute_capability: str | None = None
    #: ``bench --batch ... --report`` of these artifacts: the batch sizes with the best throughput become preferred.
    bench_report: Path | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One Triton model: its name, backend, I/O (full shapes, batch axis included) and what it serves."""

    name: str
    backend: TritonBackend
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: Full input shapes to warm up with (the manifest's export shapes, or an engine profile's opt shapes).
    warmup_shapes: dict[str, list[int]]
    artifact: Artifact | None = None
    engine: Path | None = None
    plugin: Path | None = None
    #: The ONNX model to serve when it is not an artifact's (the preprocessing model).
    onnx_model: onnx.ModelProto | None = None
    #: An ensemble's steps, in order.
    steps: tuple[EnsembleStep, ...] = ()
    #: What the person packaging should know about this model (printed by the CLI).
    notes: tuple[str, ...] = ()
    #: Sizes Triton's dynamic batcher should form (from a bench report).
    preferred_batch_sizes: tuple[int, ...] = ()

    @property
    def kind_gpu(self) -> bool:
        return self.backend == "tensorrt"

    @property
    def proto(self) -> onnx.ModelProto | None:
        """The ``model.onnx`` this model's version folder holds, if any."""
        return self.artifact.proto if self.artifact is not None else self.onnx_model


@dataclass(frozen=True)
class EnsembleStep:
    """One model of an ensemble: its inputs from ensemble tensors, its outputs to ensemble tensors (Triton's input_map/output_map)."""

    model: str
    inputs: dict[str, str]
    outputs: dict[str, str]


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.fullmatch(name):
        raise InputError(f"model name {name!r}: Triton model names are letters, digits, '_', '-' and '.' (not first), at most 128; pass --name")
    return name


def check_tensor_name(name: str, model: str) -> str:
    if not _TENSOR_NAME.fullmatch(name) or name.startswith("__"):
        raise InputError(f"{model}: tensor name {name!r} is not one Triton accepts (printable, no spaces, no leading '__'); rename it when exporting")
    return name


def _warmup_shapes(specs: Sequence[TensorSpec], export_shapes: Sequence[Sequence[Dim]]) -> dict[str, list[int]]:
    """Each input's export shape when the manifest has one, else its static dims (1 for a dynamic one)."""
    shapes: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        dims = list(export_shapes[i]) if i < len(export_shapes) else list(spec.shape or [])
        shapes[spec.name] = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
    return shapes


def _onnx_models(path: str, name: str, options: PackageOptions) -> list[ModelSpec]:
    artifact = load_artifact(path)
    manifest = artifact.manifest
    warmup = _warmup_shapes(manifest.inputs, manifest.export_input_shapes if len(manifest.export_input_shapes) == len(manifest.inputs) else [])
    models = [ModelSpec(name, "onnxruntime", manifest.inputs, manifest.outputs, warmup, artifact=artifact)]
    if options.python_backend:
        models.append(ModelSpec(name + PYTHON_SUFFIX, "python", manifest.inputs, manifest.outputs, warmup, artifact=artifact))
    return models + _ensemble_models(path, models, manifest.preprocess, options)


def _ensemble_models(path: str, served: list[ModelSpec], preprocess: dict[str, Any] | None, options: PackageOptions) -> list[ModelSpec]:
    """Where the manifest records image preprocessing (and ``options.ensemble`` allows), per served model M:
    M-preprocess (python for a python M, else onnxruntime) and M-ensemble (image -> M-preprocess -> M)."""
    model_input = image_input(served[0].inputs, preprocess)
    if options.ensemble and model_input is None:
        raise InputError(f"{path}: --ensemble needs one 3-channel NCHW float input and the image preprocessing in the manifest "
                         "(export records it for the zoo's image models); pass --no-ensemble")
    if model_input is None or preprocess is None or options.ensemble is False:
        return []
    pre = preprocessing_model(model_input, preprocess)
    image, pre_out = image_spec(model_input), output_spec(model_input)
    batch, _, height, width = served[0].warmup_shapes[model_input.name]
    warmup = {IMAGE: [batch, height, width, 3]}
    between = f"{model_input.name}.preprocessed"
    models: list[ModelSpec] = []
    for m in served:
        base, python = (m.name.removesuffix(PYTHON_SUFFIX), PYTHON_SUFFIX) if m.backend == "python" else (m.name, "")
        pre_name = base + PREPROCESS_SUFFIX + python
        steps = (
            EnsembleStep(pre_name, {IMAGE: IMAGE}, {model_input.name: between}),
            EnsembleStep(m.name, {model_input.name: between}, {t.name: t.name for t in m.outputs}),
        )
        models.append(ModelSpec(pre_name, "python" if python else "onnxruntime", [image], [pre_out], warmup, onnx_model=pre))
        models.append(ModelSpec(base + ENSEMBLE_SUFFIX + python, "ensemble", [image], m.outputs, warmup, steps=steps))
    return models


def _engine_report(engine: Path) -> dict[str, Any]:
    report_path = engine_report_path(engine)
    report = read_json(report_path)
    if not isinstance(report, dict) or "profiles" not in report:
        raise InputError(f"{engine}: no build report {report_path} beside it (its I/O comes from there); build the engine with attn-deploy build-trt")
    if report.get("engine_sha256") != sha256_file(engine):
        raise InputError(f"{report_path} does not describe {engine} (sha256 differs); rebuild the engine with attn-deploy build-trt")
    return report


def _engine_plugin(engine: Path, report: dict[str, Any], options: PackageOptions) -> Path | None:
    """The plugin library of an engine built with the FusedAttention plugin; None for one built without."""
    plugins = report.get("plugins") or {}
    if not plugins.get("fused_attention_creator"):
        return None
    found = [Path(p) for p in ([options.plugin] if options.plugin else plugins.get("libraries") or []) if Path(p).is_file()]
    if not found:
        raise InputError(f"{engine} was built with the FusedAttention plugin and its library is not found; pass --plugin PATH (attn-deploy build-plugin builds it)")
    return found[0]


def compute_capability(text: str) -> str:
    """``9.0`` for ``9.0``, ``90``, ``sm_90`` or ``sm90``; InputError otherwise."""
    m = re.fullmatch(r"(?:sm_?)?(\d+)\.?(\d)", text.strip().lower())
    if not m:
        raise InputError(f"--compute-capability {text!r}: give the target GPU's compute capability like 9.0 (H100/H200) or 8.9 (L4)")
    return f"{int(m.group(1))}.{m.group(2)}"


def _engine_target(engine: Path, report: dict[str, Any], options: PackageOptions) -> tuple[str, ...]:
    """Notes on the engine's compute capabilities; InputError when it was built for others than ``options.compute_capability``."""
    if options.compute_capability is None:
        return ()
    target = compute_capability(options.compute_capability)
    built = report.get("compute_capabilities")
    if not isinstance(built, list):
        return (f"{engine.name}: its build report records no compute capability (built for the builder's default); it runs only on a GPU it was built for, "
                f"make sure {target} is one",)
    if target not in {compute_capability(str(c)) for c in built}:
        raise InputError(f"{engine} was built for compute capability {', '.join(map(str, built))}, not {target}; "
                         f"rebuild it with attn-deploy build-trt --runtime tensorrt-rtx --compute-capability {target}")
    return ()


def _engine_models(path: str, name: str, options: PackageOptions) -> list[ModelSpec]:
    engine = Path(path)
    report = _engine_report(engine)
    notes = _engine_target(engine, report, options)
    source = Path(str(report.get("source", "")))
    if not is_onnx_path(source) or not source.is_file():
        raise InputError(f"{engine}: the ONNX model it was built from ({source}) is gone, and its outputs are read from there; keep it beside the engine")
    manifest = load_artifact(source).manifest
    profile = {p["name"]: p for p in report["profiles"][0]}
    fp16_io = report.get("precision") == "fp16" and not (report.get("options") or {}).get("keep_io_fp32", True)

    def typed(spec: TensorSpec) -> TensorSpec:
        dtype = "float16" if fp16_io and spec.dtype == "float32" else spec.dtype
        if spec.name not in profile:
            return TensorSpec(spec.name, dtype, spec.shape, spec.dynamic_axes)
        lo, hi = profile[spec.name]["min"], profile[spec.name]["max"]
        return TensorSpec(spec.name, dtype, [a if a == b else None for a, b in zip(lo, hi)], [i for i, (a, b) in enumerate(zip(lo, hi)) if a != b])

    inputs = [typed(s) for s in manifest.inputs]
    warmup = {s.name: list(profile[s.name]["opt"]) if s.name in profile else [d if isinstance(d, int) else 1 for d in s.shape or []] for s in inputs}
    models = [ModelSpec(name, "tensorrt", inputs, [typed(s) for s in manifest.outputs], warmup, engine=engine,
                        plugin=_engine_plugin(engine, report, options), notes=notes)]
    return models + _ensemble_models(path, models, manifest.preprocess, options)


def _with_preferred(models: list[ModelSpec], preferred: Preferred | None) -> list[ModelSpec]:
    """The models serving the artifact itself (not its preprocessing or ensembles) with the preferred sizes; a note on the first."""
    if preferred is None:
        return [replace(models[0], notes=(*models[0].notes, "not measured in the bench report: Triton's batcher picks sizes itself")), *models[1:]]
    served = [replace(m, preferred_batch_sizes=preferred.sizes) if m.artifact is not None or m.engine is not None else m for m in models]
    return [replace(served[0], notes=(*served[0].notes, preferred.why)), *served[1:]]


def plan_models(artifacts: Sequence[str | os.PathLike[str]], options: PackageOptions) -> list[ModelSpec]:
    """The Triton models for ``artifacts`` (.onnx files and engines), named by ``options.names`` or file stems."""
    if not artifacts:
        raise InputError("give at least one ARTIFACT (.onnx or .engine)")
    if options.names and len(options.names) != len(artifacts):
        raise InputError(f"--name given {len(options.names)} times for {len(artifacts)} artifacts: give one per artifact, in order")
    if options.instances < 1:
        raise InputError("--instances must be at least 1")
    if options.compute_capability is not None:
        compute_capability(options.compute_capability)
    report = read_bench_report(options.bench_report) if options.bench_report is not None else None
    models: list[ModelSpec] = []
    for i, artifact in enumerate(artifacts):
        path = os.fspath(artifact)
        name = check_model_name(options.names[i] if options.names else Path(path).stem)
        if is_onnx_path(path):
            made = _onnx_models(path, name, options)
        elif is_engine_path(path):
            made = _engine_models(path, name, options)
        else:
            raise InputError(f"artifact {path} is neither .onnx nor a TensorRT engine (.engine, .plan, .trt)")
        if report is not None:
            assert options.bench_report is not None
            made = _with_preferred(made, preferred_batches(report, options.bench_report, Path(path)))
        models += made
    if report is not None and not any(m.preferred_batch_sizes for m in models):
        raise InputError(f"--bench-report {options.bench_report} measured {measured_files(report)}, not {', '.join(Path(a).name for a in artifacts)} "
                         f"(sha256 differs); bench these files with attn-deploy bench MODEL FILE --batch 1,2,4,8 --report REPORT")
    seen: set[str] = set()
    for m in models:
        check_model_name(m.name)
        if m.name in seen:
            raise InputError(f"two models would be called {m.name!r}; pass --name once per artifact with distinct names")
        seen.add(m.name)
        for t in (*m.inputs, *m.outputs):
            check_tensor_name(t.name, m.name)
    return models
