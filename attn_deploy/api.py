"""The public Python API: one function per pipeline stage, each taking objects in memory or paths.

    import attn_deploy.api as ad

    artifact = ad.export("zoo:sagan-256")            # or an nn.Module with input_shapes=...
    lowered = ad.lower(artifact).artifact            # StageResult: .artifact and .summary
    report = ad.check("zoo:sagan-256", artifact, lowered)
    assert report.passed
    artifact.save("sagan-256.onnx")                  # and sagan-256.json, the manifest

The CLI calls these functions and renders what they return; the tests call them too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import onnx

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.io import load_artifact
from attn_deploy.artifact.stage import StageResult
from attn_deploy.errors import InputError, first_line

if TYPE_CHECKING:
    from torch import nn

    from attn_deploy.bench.run import BenchOptions, BenchReport
    from attn_deploy.check.gate import CheckOptions, CheckReport
    from attn_deploy.engine.build import BuildOptions, BuildResult
    from attn_deploy.export.loading import LoadedModel
    from attn_deploy.fuse.fuser import FuseOutcome
    from attn_deploy.lower.choice import NodeChoice, Prefer
    from attn_deploy.lower.fp16 import Fp16Summary
    from attn_deploy.quantize.pipeline import (
        QuantizeOptions,
        QuantizeResult,
        QuantizeSummary,
    )

PathLike = str | os.PathLike[str]
ModelLike = Artifact | onnx.ModelProto | PathLike


def load(path: PathLike) -> Artifact:
    """The ONNX model at ``path`` and its manifest (read off the graph when there is none)."""
    return load_artifact(os.fspath(path))


def as_artifact(model: ModelLike) -> Artifact:
    """An Artifact for any model argument: an Artifact as is, a ModelProto described, a path loaded."""
    if isinstance(model, Artifact):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_artifact(os.fspath(model))
    return Artifact.describe(model, source="<in memory>", exporter="unknown")


def load_model(model: nn.Module | PathLike, *, arch: str | None = None, unsafe_load: bool = False, input_shapes: Sequence[Sequence[int]] = ()) -> LoadedModel:
    """A PyTorch model ready to export: an ``nn.Module`` in memory, or MODEL as the CLI takes it."""
    from torch import nn

    from attn_deploy.export.loading import LoadedModel
    from attn_deploy.export.loading import load_model as load_spec

    if isinstance(model, nn.Module):
        return LoadedModel(module=model.eval(), source=type(model).__name__, input_shapes=tuple(tuple(s) for s in input_shapes))
    return load_spec(os.fspath(model), arch=arch, unsafe_load=unsafe_load)


def export(
    model: nn.Module | PathLike,
    *,
    input_shapes: Sequence[Sequence[int]] = (),
    dynamic_axes: Sequence[int] = (),
    opset: int = defaults.OPSET,
    exporter: str = "auto",
    fuse: bool = True,
    submodule: str | None = None,
    arch: str | None = None,
    unsafe_load: bool = False,
    input_dtypes: Sequence[str | None] = (),
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
    strict: bool = False,
) -> Artifact:
    """Export a PyTorch model to an Artifact with one FusedAttention node per attention block.

    ``model`` is an ``nn.Module`` (give ``input_shapes``) or MODEL as the CLI takes it (``zoo:NAME``,
    ``package.module:factory``, a TorchScript / ``.pt2`` / ``torch.save`` file). ``input_dtypes``
    (NumPy names, per input: ``int64`` token ids) default to the model's (a ``.pt2``'s) or float32.
    A model returning torchvision-style detections is recorded as a detector
    (``artifact.manifest.detection``). Notes from the exporters (one failed, another was used) are
    in ``artifact.manifest.notes``; how each attention was handled (routed, fused, or left plain and
    why) in ``artifact.manifest.attention``. ``strict``: an attention left plain is an ``InputError``.
    """
    from attn_deploy.export.exporter import ExportOptions, export_artifact

    loaded = load_model(model, arch=arch, unsafe_load=unsafe_load, input_shapes=input_shapes)
    options = ExportOptions(
        input_shapes=tuple(tuple(s) for s in input_shapes),
        dynamic_axes=tuple(dynamic_axes),
        opset=opset,
        exporter=exporter,  # type: ignore[arg-type]
        no_fuse=not fuse,
        submodule=submodule,
        input_dtypes=tuple(input_dtypes),
        input_names=tuple(input_names),
        output_names=tuple(output_names),
        strict=strict,
    )
    return export_artifact(loaded, options).artifact


def fuse(model: ModelLike) -> StageResult[FuseOutcome]:
    """Replace attention subgraphs of an already-exported ONNX model with FusedAttention nodes."""
    from attn_deploy.fuse.fuser import fuse_artifact

    return fuse_artifact(as_artifact(model))


def lower(
    model: ModelLike, *, target: str = "ort", max_attn_mem: int = defaults.MAX_ATTN_MEM, impl: Prefer = "auto"
) -> StageResult[list[NodeChoice]]:
    """Rewrite each FusedAttention node to the fastest memory-bounded implementation for ``target``."""
    from attn_deploy.lower.api import lower_artifact

    result = lower_artifact(as_artifact(model), target, max_attn_mem, impl)
    return StageResult(result.artifact, result.choices)


def to_fp16(model: ModelLike, *, keep_io_types: bool = True) -> StageResult[Fp16Summary]:
    """Float16 weights and activations (manifest precision ``fp16``); softmax, reductions and normalisation stay float32."""
    from attn_deploy.lower.fp16 import to_fp16 as fp16_stage

    return fp16_stage(as_artifact(model), keep_io_types=keep_io_types)


def quantize_stage(model: ModelLike, options: QuantizeOptions | None = None) -> StageResult[QuantizeSummary]:
    """The quantize stage alone: the int8 Artifact (manifest precision ``int8``) and what was done, nothing written."""
    from attn_deploy.quantize.pipeline import QuantizeOptions, quantize_artifact

    return quantize_artifact(as_artifact(model), options or QuantizeOptions())


def quantize(model: nn.Module | ModelLike, output: PathLike, options: QuantizeOptions | None = None) -> QuantizeResult:
    """int8 for ONNX Runtime, written to ``output`` with its manifest; the report has parity and latency.

    Dynamic int8 of the projections by default; static Q/DQ int8 of convolutions too, calibrated on
    ``options.calibrate`` (images or .npz), when that is set.

    ``model`` is an ``nn.Module`` (give ``options.input_shapes``), MODEL as the CLI takes it, an
    .onnx path, an Artifact or a ModelProto. The graph work is ``quantize_stage``; the float/int8
    comparison is ``attn_deploy.bench.compare.compare_int8``.
    """
    from attn_deploy.bench.compare import compare_int8
    from attn_deploy.quantize.pipeline import QuantizeOptions
    from attn_deploy.quantize.pipeline import quantize_model as quantize_with
    from attn_deploy.runtime.inputs import artifact_feeds, input_specs, load_samples
    from attn_deploy.shapes import shape_overrides

    opts = options or QuantizeOptions()

    def sample(artifact: Artifact) -> dict[str, Any]:  # seed 1: the parity inputs quantize has always used
        shapes = shape_overrides(opts.inputs)
        return artifact_feeds(artifact, shapes, data=opts.data, seed=1, val_range=opts.val_range, vocab=opts.vocab,
                              allow_nonfinite=opts.allow_nonfinite)

    def calibrate(artifact: Artifact) -> list[dict[str, Any]]:
        assert opts.calibrate is not None
        specs = input_specs(artifact, shape_overrides(opts.inputs))
        return load_samples(opts.calibrate, specs, preprocess=artifact.manifest.preprocess)[: opts.calibrate_count]

    return quantize_with(model, output, opts, compare=compare_int8, sample=sample, calibrate=calibrate)


#: The name ``attn-deploy quantize`` calls (``attn_deploy.quantize.quantize_model`` resolves to it).
quantize_model = quantize


def build_engine(model: ModelLike, engine: PathLike, options: BuildOptions | None = None) -> BuildResult:
    """A TensorRT / TensorRT-RTX engine (no GPU needed with TensorRT-RTX) and its report ``ENGINE.json``."""
    from attn_deploy.engine.build import BuildOptions
    from attn_deploy.engine.build import build_engine as build

    return build(as_artifact(model), os.fspath(engine), options or BuildOptions())


def check(
    reference: nn.Module | LoadedModel | ModelLike,
    *candidates: ModelLike,
    options: CheckOptions | None = None,
    progress: Callable[[str], None] = lambda _: None,
    **changes: Any,
) -> CheckReport:
    """Run ``reference`` and every candidate on the same inputs; ``report.passed`` is the parity verdict.

    ``reference`` is an ``nn.Module`` (give ``input_shapes``), a loaded model, an Artifact, a
    ModelProto, or a path / MODEL spec as the CLI takes it; candidates are Artifacts, ModelProtos,
    or .onnx / .engine paths. With no candidate a PyTorch reference is exported in memory and
    checked in ONNX Runtime. Keywords set fields of ``CheckOptions`` (``seed``, ``precision``, ...)
    or of its ``WorkloadOptions`` (``backends``, ``input_shapes``, ``arch``, ...).
    """
    from attn_deploy.check.gate import CheckOptions, run_check

    return run_check(reference, list(candidates), _with_changes(options or CheckOptions(), changes), progress)


def bench(
    reference: nn.Module | LoadedModel | ModelLike,
    *candidates: ModelLike,
    options: BenchOptions | None = None,
    progress: Callable[[str], None] = lambda _: None,
    tick: Callable[[str, int, int], None] = lambda *_: None,
    **changes: Any,
) -> BenchReport:
    """Latency and memory of ``reference`` and every candidate, one backend at a time.

    Arguments as for ``check``; ``tick(label, done, total)`` follows the timed runs. Keywords set
    fields of ``BenchOptions`` (``iterations``, ``batches``, ...) or of its ``WorkloadOptions``.
    """
    from attn_deploy.bench.run import BenchOptions, run_bench

    return run_bench(reference, list(candidates), _with_changes(options or BenchOptions(), changes), progress, tick)


_Options = TypeVar("_Options", "CheckOptions", "BenchOptions")


def _with_changes(options: _Options, changes: dict[str, Any]) -> _Options:
    """``options`` with keyword changes to its fields or its workload's; ``input_shapes`` may be a list of one shape."""
    if not changes:
        return options
    own = {f.name for f in dataclasses.fields(options)}
    mine = {k: v for k, v in changes.items() if k in own}
    workload = {k: v for k, v in changes.items() if k not in own}
    shapes = workload.get("input_shapes")
    if shapes is not None and not isinstance(shapes, Mapping):
        if len(shapes) != 1:
            raise InputError("input_shapes: give one shape for a model with one input, else a {input name: shape} mapping")
        workload["input_shapes"] = {"": tuple(int(d) for d in shapes[0])}
    try:
        return dataclasses.replace(options, **mine, workload=dataclasses.replace(options.workload, **workload))
    except TypeError as e:
        raise InputError(f"{first_line(e)}; keywords are fields of {type(options).__name__} or WorkloadOptions") from None


# --- File in, files out: one call per CLI command (default output names are decided here). ---

if TYPE_CHECKING:
    from attn_deploy.demo import DemoResult
    from attn_deploy.export.exporter import ExportResult
    from attn_deploy.fuse.fuser import FuseResult
    from attn_deploy.lower.api import LowerResult
    from attn_deploy.package import PackageOptions, PackageResult
    from attn_deploy.trt_plugin.build import PluginBuildOptions, PluginBuildResult
    from attn_deploy.visualize.run import VisualizeOptions, VisualizeResult


def export_output(model: PathLike, submodule: str | None = None) -> Path:
    """Where ``export`` writes by default: ``NAME.onnx`` here (``zoo:sagan-256`` -> ``sagan-256.onnx``),
    with ``-PART`` for a ``submodule`` (``backbone.body`` -> ``NAME-backbone-body.onnx``)."""
    stem = Path(os.fspath(model).split(":", 1)[-1]).stem
    return Path(stem + (f"-{submodule.replace('.', '-')}" if submodule else "") + ".onnx")


def engine_output(model: PathLike) -> Path:
    """Where ``build-trt`` writes by default: ``MODEL.engine`` beside ``MODEL.onnx``."""
    return Path(model).with_suffix(".engine")


def export_file(model: nn.Module | PathLike, output: PathLike | None = None, *, submodule: str | None = None, **options: Any) -> ExportResult:
    """``export`` written to ``output`` (default: ``export_output``) and its manifest beside it.

    ``options`` are ``export``'s keywords. The output name and the exporter are checked before the
    model is loaded. The result has the paths written and the exporters' notes.
    """
    from attn_deploy.export.exporter import ExportResult

    exporter = options.get("exporter", defaults.EXPORTER)
    if exporter not in defaults.EXPORTERS:
        raise InputError(f"--exporter must be {', '.join(defaults.EXPORTERS[:-1])} or {defaults.EXPORTERS[-1]}, not {exporter!r}")
    target = Path(output) if output is not None else export_output(model if isinstance(model, (str, os.PathLike)) else "model", submodule)
    if target.suffix != ".onnx":
        raise InputError(f"output {target} must end in .onnx")
    artifact = export(model, submodule=submodule, **options)
    onnx_path, manifest_path = artifact.save(target)
    return ExportResult(artifact, artifact.manifest.exporter, list(artifact.manifest.notes), onnx_path, manifest_path)


def fuse_file(model: PathLike, output: PathLike, *, always_write: bool = False) -> FuseResult:
    """``fuse`` from file to file; ``output`` is written only when attention was found, or ``always_write``."""
    from attn_deploy.fuse.fuser import fuse_file as fuse_path

    return fuse_path(Path(model), Path(output), always_write=always_write)


def lower_file(
    model: PathLike, output: PathLike, *, target: str = defaults.LOWER_TARGET, max_attn_mem: int = defaults.MAX_ATTN_MEM, impl: Prefer = "auto"
) -> LowerResult:
    """``lower`` from file to file: ``output`` and its manifest, both or neither."""
    from attn_deploy.lower.api import lower_file as lower_path

    return lower_path(Path(model), Path(output), target=target, max_attn_mem=max_attn_mem, prefer=impl)


def inspect(model: PathLike, *, max_attn_mem: int = defaults.MAX_ATTN_MEM) -> list[dict[str, Any]]:
    """One record per FusedAttention node: shapes, score-matrix bytes, FLOPs and each target's choice."""
    from attn_deploy.lower.inspect import inspect_file

    return inspect_file(Path(model), max_attn_mem)


def visualize(
    model: nn.Module | PathLike,
    data: Sequence[PathLike],
    output: PathLike,
    options: VisualizeOptions | None = None,
    *,
    input_shape: Sequence[int] = (),
    **changes: Any,
) -> VisualizeResult:
    """Attention maps of ``model``'s attentions for query points of the images ``data``, written to the folder
    ``output`` (a PNG per image × attention, a contact sheet per image, ``index.html``, ``maps.npz``).

    ``model`` is MODEL as the CLI takes it, an ``nn.Module`` (give ``input_shape``, ``[B, 3, H, W]``), or an
    .onnx path (run in ONNX Runtime); ``options.onnx`` adds an ONNX artifact to compare with. Only the rows
    asked for are computed, never an N×N map (``--rollout`` aside). Keywords set ``VisualizeOptions`` fields.
    """
    from attn_deploy.visualize.run import VisualizeOptions
    from attn_deploy.visualize.run import visualize as run

    opts = dataclasses.replace(options or VisualizeOptions(), **changes)
    if opts.onnx is not None:
        opts = dataclasses.replace(opts, onnx=Path(opts.onnx))
    source: Any = model if isinstance(model, (str, os.PathLike)) else load_model(model, input_shapes=[input_shape] if input_shape else ())
    return run(os.fspath(source) if isinstance(source, (str, os.PathLike)) else source, [Path(d) for d in data], Path(output), opts)


def demo(
    model: str = defaults.DEMO_MODEL,
    out_dir: PathLike = defaults.DEMO_OUT_DIR,
    *,
    iterations: int = defaults.DEMO_ITERATIONS,
    min_seconds: float = defaults.DEMO_MIN_SECONDS,
    progress: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Export a zoo model into ``out_dir``, then check and bench it in PyTorch and ONNX Runtime."""
    from attn_deploy.demo import run_demo

    return run_demo(model, Path(out_dir), iterations, min_seconds, progress)


def package(artifacts: Sequence[PathLike], repository: PathLike, options: PackageOptions | None = None) -> PackageResult:
    """A Triton model repository at ``repository`` for ``artifacts`` (.onnx and .engine paths), written atomically."""
    from attn_deploy.package import PackageOptions, package_repository

    return package_repository(artifacts, repository, options or PackageOptions())


def build_plugin(options: PluginBuildOptions | None = None, progress: Callable[[str], None] | None = None) -> PluginBuildResult:
    """Compile the Triton kernel's cubins and build the FusedAttention TensorRT plugin with CMake; the result
    has the library paths. ``progress`` gets a line per step (cubin compiles take seconds each)."""
    from attn_deploy.trt_plugin.build import PluginBuildOptions
    from attn_deploy.trt_plugin.build import build_plugin as build

    return build(options or PluginBuildOptions(), progress)
