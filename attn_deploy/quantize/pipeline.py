"""The quantize stage: an Artifact in, its dynamic int8 Artifact (attention lowered for ONNX Runtime) out.

``quantize_artifact`` is graph work only and returns ``StageResult(int8 artifact, QuantizeSummary)``.
``quantize_model`` adds what the command does around it: load or export the source, compare float
and int8 (a comparer passed in: parity and latency live in ``attn_deploy.bench.compare``, so this
package imports neither ``check``, ``bench`` nor ``runtime``), build the report, and write the
model and its manifest atomically.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.graph import IR_VERSION, dims_of, graph_inputs
from attn_deploy.artifact.io import load_artifact, save_artifact
from attn_deploy.artifact.stage import StageResult
from attn_deploy.errors import InputError
from attn_deploy.lower import lower_model
from attn_deploy.lower.choice import NodeChoice
from attn_deploy.ops.contract import OP_TYPE
from attn_deploy.quantize.attention import use_int8_attention_body
from attn_deploy.quantize.dynamic import (
    Candidate,
    WeightType,
    plan,
    quantize,
    quantized_node_names,
)
from attn_deploy.quantize.prepare import Preparation, prepare

if TYPE_CHECKING:
    from torch import nn

#: Model inputs and outputs by name (what ONNX Runtime takes and returns).
Feeds = dict[str, np.ndarray]
ModelSource = Artifact | onnx.ModelProto | str | os.PathLike[str]
_ONNX_HINT = "pass an .onnx file or a MODEL that `export` accepts"


@dataclass(frozen=True)
class QuantizeOptions:
    per_channel: bool = True
    weight_type: WeightType = "int8"
    #: fnmatch patterns on node names or op types to keep float.
    exclude: tuple[str, ...] = ()
    include_convs: bool = False
    #: 7-bit weights, so ONNX Runtime's int8 kernels cannot saturate on CPUs without VNNI (see
    #: ``quantize.dynamic.quantize``); False uses all 8 bits, for VNNI/AMX deployment targets only.
    reduce_range: bool = True
    #: Also run FusedAttention's P·V product in int8 (a different function body).
    quantize_attention: bool = False
    #: Keep the 1x1 Conv projections feeding FusedAttention's Q and K float. Softmax's exponential
    #: amplifies their error: SAGAN C=2048 attention-branch cosine 0.99993 float, 0.99906 int8
    #: (benchmarks/quantize_speed.py), and int8 fell below 0.999 on other inputs. They are C/8 wide
    #: in SAGAN, so this costs little speed. (MultiheadAttention's in_proj is one Linear: int8.)
    float_qk: bool = True
    #: Lower FusedAttention for ONNX Runtime (``attn-deploy lower --target ort``) in the int8 model:
    #: dynamic int8 (MatMulInteger, DynamicQuantizeLinear) runs only in ONNX Runtime anyway.
    #: Not with ``quantize_attention``, whose int8 P·V is the node's function body.
    lower: bool = True
    #: Also write a PyTorch dynamic-quantized model here (MODEL inputs only).
    torch_output: Path | None = None
    #: How to load a MODEL that is not an .onnx file (as for ``export``).
    arch: str | None = None
    unsafe_load: bool = False
    input_shapes: tuple[tuple[int, ...], ...] = ()
    #: Timed runs per model for the report's latency; 0 skips parity and latency.
    iterations: int = 5
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The report's ``options`` (the graph options; loading and timing ones are not recorded)."""
        return {
            "per_channel": self.per_channel,
            "weight_type": self.weight_type,
            "exclude": list(self.exclude),
            "include_convs": self.include_convs,
            "reduce_range": self.reduce_range,
            "quantize_attention": self.quantize_attention,
            "float_qk": self.float_qk,
            "lower": self.lower,
        }


@dataclass(frozen=True)
class QuantizeSummary:
    """What the quantize stage did: preparation, each node quantized or kept float and why, lowering."""

    preparation: Preparation
    candidates: tuple[Candidate, ...]
    #: Candidates ``quantize_dynamic`` actually replaced.
    quantized: frozenset[str]
    attention_int8_pv: bool
    #: One choice per FusedAttention node when the int8 model was lowered for ONNX Runtime.
    lowering: tuple[NodeChoice, ...] = ()
    #: The float model lowered the same way (to compare latencies), when the int8 one was lowered.
    float_lowered: Artifact | None = None
    warnings: tuple[str, ...] = ()

    @property
    def nodes(self) -> dict[str, Any]:
        """The report's ``nodes``: names quantized, and every other candidate with why it was kept float."""
        asked = [c for c in self.candidates if c.reason is None]
        return {
            "quantized": sorted(c.name for c in asked if c.name in self.quantized),
            "skipped": [
                {"name": c.name, "op_type": c.op_type, "why": c.reason or "quantize_dynamic left it float"}
                for c in self.candidates
                if c.name not in self.quantized
            ],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "preparation": self.preparation.to_dict(),
            "nodes": self.nodes,
            "attention_int8_pv": self.attention_int8_pv,
            "attention_lowering": [c.to_json() for c in self.lowering],
        }


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _nothing_to_quantize(where: str, model: onnx.ModelProto, options: QuantizeOptions) -> InputError:
    ops = ", ".join(f"{k} x{v}" for k, v in op_counts(model).items())
    hint = "" if options.include_convs else "; --include-convs also quantizes the remaining Conv nodes"
    return InputError(
        f"nothing to quantize in {where}: no MatMul/Gemm with constant weights and no 1x1 Conv projection "
        f"outside --exclude (it has {ops}){hint}"
    )


def quantize_artifact(artifact: Artifact, options: QuantizeOptions = QuantizeOptions(), *, name: str | None = None) -> StageResult[QuantizeSummary]:
    """Dynamic int8 of ``artifact``'s weight projections (manifest precision ``int8``); ``name`` is for messages.

    Raises ``InputError`` when nothing can be quantized.
    """
    where = name or str(artifact.path or artifact.manifest.source)
    source = onnx.ModelProto()
    source.CopyFrom(artifact.proto)
    source.ir_version = IR_VERSION
    prepared, preparation = prepare(source, separate_query_key=options.float_qk)
    candidates = plan(prepared, exclude=options.exclude, include_convs=options.include_convs, float_qk=options.float_qk)
    if options.quantize_attention:
        candidates = [
            replace(c, reason="Q·Kᵀ and softmax kept float32; its P·V product runs in int8 (--quantize-attention)") if c.op_type == OP_TYPE else c
            for c in candidates
        ]
    wanted = [c for c in candidates if c.reason is None]
    int8_pv = options.quantize_attention and bool(artifact.sites)
    if not wanted and not int8_pv:
        raise _nothing_to_quantize(where, prepared, options)
    warnings = []
    if options.include_convs and any(c.op_type == "Conv" for c in wanted):
        warnings.append("--include-convs: ONNX Runtime's ConvInteger is often slower than fp32 Conv on CPU; compare the latencies below")
    quantized = (
        quantize(prepared, candidates, per_channel=options.per_channel, weight_type=options.weight_type, reduce_range=options.reduce_range)
        if wanted
        else prepared
    )
    if int8_pv:
        use_int8_attention_body(quantized)
    done = quantized_node_names(prepared, quantized, candidates)
    if not done and not int8_pv:
        raise _nothing_to_quantize(where, prepared, options)  # quantize_dynamic declined every candidate
    lowering: list[NodeChoice] = []
    float_lowered = None
    if options.lower and artifact.sites and not options.quantize_attention:
        quantized, lowering = lower_model(quantized)
        float_lowered = artifact.evolve(lower_model(source)[0], stage="lower:ort")
    summary = QuantizeSummary(preparation, tuple(candidates), frozenset(done), int8_pv, tuple(lowering), float_lowered, tuple(warnings))
    return StageResult(artifact.evolve(quantized, stage="quantize", precision="int8"), summary)


@dataclass
class QuantizeSource:
    """The float model to quantize, how to make example inputs for it, and the torch module when it was exported here."""

    artifact: Artifact
    feeds: Callable[[], Feeds | None]
    module: Any = None
    name: str = ""


def _random_feeds(model: onnx.ModelProto) -> Feeds | None:
    """Standard-normal inputs of the graph's static shapes; None if a dimension is symbolic."""
    rng = np.random.default_rng(1)
    feeds: Feeds = {}
    for vi in graph_inputs(model):
        dims = dims_of(vi.type)
        if dims is None or not all(isinstance(d, int) for d in dims) or vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            return None
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)  # type: ignore[arg-type]
    return feeds


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(1)


def _is_onnx_file(spec: str) -> bool:
    path = Path(spec)
    return path.suffix == ".onnx" or (path.is_file() and _first_byte(path) == b"\x08")  # a ModelProto starts with ir_version


def load_source(model: nn.Module | ModelSource, options: QuantizeOptions) -> QuantizeSource:
    """The float Artifact to quantize: given, loaded from an .onnx file, or exported from MODEL / an nn.Module."""
    if isinstance(model, Artifact):
        return QuantizeSource(model, lambda: _random_feeds(model.proto), name=str(model.path or model.manifest.source))
    if isinstance(model, onnx.ModelProto):
        artifact = Artifact.describe(model, source="<in memory>", exporter="unknown")
        return QuantizeSource(artifact, lambda: _random_feeds(model), name="<in memory>")
    if isinstance(model, (str, os.PathLike)) and _is_onnx_file(os.fspath(model)):
        loaded_artifact = load_artifact_with_hint(os.fspath(model))
        return QuantizeSource(loaded_artifact, lambda: _random_feeds(loaded_artifact.proto), name=os.fspath(model))
    from attn_deploy.api import load_model
    from attn_deploy.export import ExportOptions
    from attn_deploy.export.exporter import export_artifact

    loaded = load_model(model, arch=options.arch, unsafe_load=options.unsafe_load, input_shapes=options.input_shapes)
    exported = export_artifact(loaded, ExportOptions(input_shapes=options.input_shapes)).artifact
    shapes = options.input_shapes or loaded.input_shapes

    def feeds() -> Feeds:
        names = [vi.name for vi in graph_inputs(exported.proto)]
        return {n: t.numpy() for n, t in zip(names, loaded.example_inputs(shapes, seed=1))}

    name = model if isinstance(model, str) else os.fspath(model) if isinstance(model, os.PathLike) else loaded.source
    return QuantizeSource(exported, feeds, loaded.module, name)


def load_artifact_with_hint(spec: str) -> Artifact:
    """``load_artifact`` with quantize's hint (an .onnx file or a MODEL) in its errors."""
    if not Path(spec).exists():
        raise InputError(f"{spec}: no such file")
    return load_artifact(spec, hint=_ONNX_HINT)


@dataclass
class QuantizeResult:
    output: Path
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    #: The int8 Artifact as written (None only for results made before this field existed).
    artifact: Artifact | None = None
    manifest_path: Path | None = None


class Comparer(Protocol):
    """Parity and latency of the int8 model against the float one (``attn_deploy.bench.compare.compare_int8``)."""

    def __call__(
        self, float_model: onnx.ModelProto, int8_model: onnx.ModelProto, feeds: Feeds | None, *,
        iterations: int, threads: int | None = ..., float_lowered: onnx.ModelProto | None = ...,
    ) -> dict[str, Any]: ...


def quantize_model(
    model: nn.Module | ModelSource, output: str | os.PathLike[str], options: QuantizeOptions = QuantizeOptions(), *, compare: Comparer | None = None
) -> QuantizeResult:
    """Quantize ``model`` into ``output`` and its manifest; the report has the same fields as ``attn-deploy quantize --report``.

    ``compare`` fills the report's ``parity``/``latency`` (and ``detection``); without one they are
    None. Nothing is written on error.
    """
    output = Path(output)
    if output.suffix != ".onnx":
        raise InputError(f"output {output} must end in .onnx")
    from attn_deploy.artifact.fileio import scratch_beside

    with scratch_beside(output):  # ONNX Runtime's quantizer writes temporary models: none stays in $TMPDIR
        return _quantize_model(model, output, options, compare)


def _quantize_model(model: nn.Module | ModelSource, output: Path, options: QuantizeOptions, compare: Comparer | None) -> QuantizeResult:
    source = load_source(model, options)
    if options.torch_output is not None and source.module is None:
        raise InputError("--torch needs a PyTorch MODEL (zoo:NAME, a .pt file, ...), not an .onnx file")
    stage = quantize_artifact(source.artifact, options, name=source.name)
    summary, int8 = stage.summary, stage.artifact
    warnings = list(summary.warnings)
    float_model = onnx.ModelProto()
    float_model.CopyFrom(source.artifact.proto)
    float_model.ir_version = IR_VERSION
    float_size, int8_size = float_model.ByteSize(), int8.proto.ByteSize()
    report: dict[str, Any] = {
        "source": source.name,
        "output": str(output),
        "options": options.to_json(),
        "size_bytes": {"float": float_size, "int8": int8_size, "ratio": int8_size / float_size},
        **summary.to_json(),
        "ops_after": op_counts(int8.proto),
    }
    feeds = source.feeds() if options.iterations > 0 else None
    if compare is not None:
        lowered = summary.float_lowered.proto if summary.float_lowered is not None else None
        report.update(compare(float_model, int8.proto, feeds, iterations=options.iterations, threads=options.threads, float_lowered=lowered))
    else:
        report["parity"] = report["latency"] = None
    if feeds is None and options.iterations > 0:
        warnings.append("parity and latency skipped: the model has a symbolic input dimension")
    if options.torch_output is not None:
        from attn_deploy.quantize.torch_side import save_torch_quantized

        report["torch"] = save_torch_quantized(source.module, options.torch_output)
        warnings.append(str(report["torch"]["note"]))
    _, manifest_path = save_artifact(int8, output)
    report["warnings"] = warnings
    return QuantizeResult(output, report, warnings, int8, manifest_path)


def write_report(report: dict[str, Any], path: Path) -> None:
    from attn_deploy.artifact.fileio import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(report, indent=2) + "\n").encode())
