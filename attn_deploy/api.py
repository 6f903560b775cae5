"""The public Python API: one function per pipeline stage, each taking objects in memory or paths.

    import attn_deploy as ad

    artifact = ad.export("zoo:sagan-256")            # or an nn.Module with input_shapes=...
    lowered = ad.lower(artifact).artifact            # StageResult: .artifact and .summary
    report = ad.check("zoo:sagan-256", artifact, lowered)
    assert report.passed
    artifact.save("sagan-256.onnx")                  # and sagan-256.json, the manifest

The CLI calls these functions and renders what they return; the tests call them too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import onnx

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.io import load_artifact
from attn_deploy.artifact.stage import StageResult

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
    if isinstance(model, onnx.ModelProto):
        return Artifact.describe(model, source="<in memory>", exporter="unknown")
    return load_artifact(os.fspath(model))


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
) -> Artifact:
    """Export a PyTorch model to an Artifact with one FusedAttention node per attention block.

    ``model`` is an ``nn.Module`` (give ``input_shapes``) or MODEL as the CLI takes it (``zoo:NAME``,
    ``package.module:factory``, a TorchScript / ``.pt2`` / ``torch.save`` file). Notes from the
    exporters (one failed, another was used) are in ``artifact.manifest.notes``.
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
    """Dynamic int8 for ONNX Runtime, written to ``output`` with its manifest; the report has parity and latency.

    ``model`` is an ``nn.Module`` (give ``options.input_shapes``), MODEL as the CLI takes it, an
    .onnx path, an Artifact or a ModelProto. The graph work is ``quantize_stage``; the float/int8
    comparison is ``attn_deploy.bench.compare.compare_int8``.
    """
    from attn_deploy.bench.compare import compare_int8
    from attn_deploy.quantize.pipeline import QuantizeOptions
    from attn_deploy.quantize.pipeline import quantize_model as quantize_with

    return quantize_with(model, output, options or QuantizeOptions(), compare=compare_int8)


#: The name ``attn-deploy quantize`` calls (``attn_deploy.quantize.quantize_model`` resolves to it).
quantize_model = quantize


def build_engine(model: ModelLike, engine: PathLike, options: BuildOptions | None = None) -> BuildResult:
    """A TensorRT / TensorRT-RTX engine (no GPU needed with TensorRT-RTX) and its report ``ENGINE.json``."""
    from attn_deploy.engine.build import BuildOptions
    from attn_deploy.engine.build import build_engine as build

    return build(as_artifact(model), os.fspath(engine), options or BuildOptions())


def check(reference: PathLike, *candidates: PathLike, options: CheckOptions | None = None, **kwargs: Any) -> CheckReport:
    """Run ``reference`` and every candidate on the same inputs; ``report.passed`` is the parity verdict."""
    from attn_deploy.check.gate import CheckOptions, run_check

    return run_check(os.fspath(reference), [os.fspath(c) for c in candidates], options or CheckOptions(), **kwargs)


def bench(reference: PathLike, *candidates: PathLike, options: BenchOptions | None = None, **kwargs: Any) -> BenchReport:
    """Latency and memory of ``reference`` and every candidate, one backend at a time."""
    from attn_deploy.bench.run import BenchOptions, run_bench

    return run_bench(os.fspath(reference), [os.fspath(c) for c in candidates], options or BenchOptions(), **kwargs)
