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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnx

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.graph import IR_VERSION
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
from attn_deploy.shapes import InputDecl, data_inputs

if TYPE_CHECKING:
    from torch import nn

    from attn_deploy.check.detection import DetectionSelection

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
    #: Inputs described with names and dtypes (``--input``): for exporting a MODEL, and shapes for an .onnx's dynamic dims.
    inputs: tuple[InputDecl, ...] = ()
    #: The parity inputs, as ``check`` makes them: random float range, real data (.npz or image), token-id bound.
    val_range: tuple[float, float] | None = None
    data: Path | None = None
    allow_nonfinite: bool = False
    vocab: int | None = None
    #: Static (calibrated) Q/DQ int8 of convolutions and projections on samples from this image,
    #: image folder or .npz (``--calibrate``); None: dynamic int8 of the projections only.
    calibrate: Path | None = None
    calibrate_count: int = defaults.CALIBRATE_COUNT
    calibrate_method: str = defaults.CALIBRATE_METHOD
    #: Static only: nodes go back to float, noisiest first, until every output's cosine to the float
    #: model over the calibration samples reaches this; None quantizes every candidate.
    target_cosine: float | None = defaults.TARGET_COSINE
    #: Static only: also quantize the ops between convolutions (``static.GLUE_OP_TYPES``: adds,
    #: sigmoids, concatenations, pooling...) so activations stay int8 between them (``--float-glue``: off).
    int8_glue: bool = True
    #: Static only: whose Q/DQ flavour (``defaults.QDQ_FOR``). "tensorrt" also keeps the FusedAttention
    #: nodes (no lowering: build-trt gives them the plugin or the body) and quantizes no glue.
    qdq_for: str = "onnxruntime"
    #: Static only, for a detector: its detections on every calibration sample must match the float
    #: model's at least this well (matched / max count, as ``check --min-matched``) instead of a cosine.
    min_matched: float = defaults.DETECTION_MIN_MATCHED
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
            "mode": "static" if self.calibrate is not None else "dynamic",
            **({"calibrate": str(self.calibrate), "calibrate_count": self.calibrate_count,
                "calibrate_method": self.calibrate_method, "target_cosine": self.target_cosine, "int8_glue": self.int8_glue,
                "qdq_for": self.qdq_for,
                "min_matched": self.min_matched}
               if self.calibrate is not None else {}),
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
    #: The report's ``static`` section (calibration, automatic choices, per-node SQNR), static int8 only.
    static: dict[str, Any] | None = None

    @property
    def nodes(self) -> dict[str, Any]:
        """The report's ``nodes``: names quantized, and every other candidate with why it was kept float."""
        asked = [c for c in self.candidates if c.reason is None]
        return {
            "quantized": sorted(c.name for c in asked if c.name in self.quantized),
            "quantized_by_op_type": dict(Counter(c.op_type for c in asked if c.name in self.quantized).most_common()),
            "skipped": [
                {"name": c.name, "op_type": c.op_type, "why": c.reason or "the quantizer left it float"}
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
            "mode": MODE_STATIC if self.static is not None else MODE_DYNAMIC,
            **({"static": self.static} if self.static is not None else {}),
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


MODE_STATIC = "static: Q/DQ int8 of convolutions, projections and the ops between them, calibrated (--calibrate)"
MODE_DYNAMIC = "dynamic: int8 weights of the projections, activations quantized at run time (no --calibrate data given)"


def quantize_artifact(
    artifact: Artifact, options: QuantizeOptions = QuantizeOptions(), *, name: str | None = None,
    calibration: Sequence[Feeds] = (),
) -> StageResult[QuantizeSummary]:
    """int8 of ``artifact`` (manifest precision ``int8``): static Q/DQ when ``options.calibrate`` is set
    (on the ``calibration`` samples), else dynamic int8 of its weight projections; ``name`` is for messages.

    Raises ``InputError`` when nothing can be quantized.
    """
    if options.calibrate is not None:
        return _quantize_static(artifact, options, calibration, name or str(artifact.path or artifact.manifest.source))
    if options.qdq_for != "onnxruntime":
        raise InputError(f"--for {options.qdq_for} is for static int8: pass --calibrate DATA (dynamic int8 runs only in ONNX Runtime)")
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


def _quantize_static(artifact: Artifact, options: QuantizeOptions, calibration: Sequence[Feeds], where: str) -> StageResult[QuantizeSummary]:
    from attn_deploy.check.detection import selection_of
    from attn_deploy.quantize.static import glue_candidates, quantize_static, quantized_static_names, static_report

    if options.quantize_attention:
        raise InputError("--quantize-attention is for dynamic int8; static int8 keeps attention float (drop one of them)")
    source = onnx.ModelProto()
    source.CopyFrom(artifact.proto)
    source.ir_version = IR_VERSION
    prepared, preparation = prepare(source, separate_query_key=options.float_qk)
    candidates = plan(prepared, exclude=options.exclude, include_convs=True, float_qk=options.float_qk)
    if not any(c.reason is None for c in candidates):
        raise _nothing_to_quantize(where, prepared, options)
    tensorrt = options.qdq_for == "tensorrt"
    if options.int8_glue and not tensorrt:
        candidates += glue_candidates(prepared, candidates, options.exclude)
    outcome = quantize_static(prepared, candidates, calibration[: options.calibrate_count], method=options.calibrate_method,
                              per_channel=options.per_channel, reduce_range=options.reduce_range, target_cosine=options.target_cosine,
                              detection=artifact.manifest.detection, selection=selection_of(artifact.manifest),
                              min_matched=options.min_matched,
                              qdq_for="tensorrt" if tensorrt else "onnxruntime")
    quantized = outcome.model
    done = quantized_static_names(quantized, outcome.candidates)
    warnings = []
    if not done:
        warnings.append(f"static int8 kept every node float: no quantized node met cosine {options.target_cosine} on the calibration samples")
    lowering: list[NodeChoice] = []
    float_lowered = None
    if options.lower and artifact.sites and not tensorrt:
        quantized, lowering = lower_model(quantized)
        float_lowered = artifact.evolve(lower_model(source)[0], stage="lower:ort")
    summary = QuantizeSummary(preparation, outcome.candidates, frozenset(done), False, tuple(lowering), float_lowered,
                              tuple(warnings), static_report(outcome, options.calibrate_method, options.target_cosine))
    return StageResult(artifact.evolve(quantized, stage="quantize:static", precision="int8"), summary)


@dataclass
class QuantizeSource:
    """The float model to quantize, and the torch module when it was exported here."""

    artifact: Artifact
    module: Any = None
    name: str = ""


#: The parity inputs for the float model (``attn_deploy.runtime.inputs.artifact_feeds`` with the options'
#: input settings); ``InputError`` when they cannot be made (a dynamic dimension with no shape given).
Sampler = Callable[[Artifact], Feeds]
#: The calibration samples for the float model (``--calibrate``: images or .npz, as ``check --data`` reads them).
Calibrator = Callable[[Artifact], list[Feeds]]


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(1)


def _is_onnx_file(spec: str) -> bool:
    path = Path(spec)
    return path.suffix == ".onnx" or (path.is_file() and _first_byte(path) == b"\x08")  # a ModelProto starts with ir_version


def load_source(model: nn.Module | ModelSource, options: QuantizeOptions) -> QuantizeSource:
    """The float Artifact to quantize: given, loaded from an .onnx file, or exported from MODEL / an nn.Module."""
    if isinstance(model, Artifact):
        return QuantizeSource(model, name=str(model.path or model.manifest.source))
    if isinstance(model, onnx.ModelProto):
        return QuantizeSource(Artifact.describe(model, source="<in memory>", exporter="unknown"), name="<in memory>")
    if isinstance(model, (str, os.PathLike)) and _is_onnx_file(os.fspath(model)):
        return QuantizeSource(load_artifact_with_hint(os.fspath(model)), name=os.fspath(model))
    from attn_deploy.api import load_model
    from attn_deploy.export.exporter import ExportOptions, export_artifact, options_for_inputs

    loaded = load_model(model, arch=options.arch, unsafe_load=options.unsafe_load, input_shapes=options.input_shapes)
    decls = options.inputs or tuple(data_inputs(options.data))
    export_options = options_for_inputs(decls, loaded) if decls else ExportOptions(input_shapes=options.input_shapes)
    exported = export_artifact(loaded, export_options).artifact
    name = model if isinstance(model, str) else os.fspath(model) if isinstance(model, os.PathLike) else loaded.source
    return QuantizeSource(exported, loaded.module, name)


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
        detection: Mapping[str, str] | None = ..., selection: DetectionSelection | None = ...,
    ) -> dict[str, Any]: ...


def quantize_model(
    model: nn.Module | ModelSource,
    output: str | os.PathLike[str],
    options: QuantizeOptions = QuantizeOptions(),
    *,
    compare: Comparer | None = None,
    sample: Sampler | None = None,
    calibrate: Calibrator | None = None,
) -> QuantizeResult:
    """Quantize ``model`` into ``output`` and its manifest; the report has the same fields as ``attn-deploy quantize --report``.

    ``compare`` fills the report's ``parity``/``latency`` (and ``detection``) on the inputs ``sample``
    makes; without both they are None. Nothing is written on error.
    """
    output = Path(output)
    if output.suffix != ".onnx":
        raise InputError(f"output {output} must end in .onnx")
    from attn_deploy.artifact.fileio import scratch_beside

    with scratch_beside(output):  # ONNX Runtime's quantizer writes temporary models: none stays in $TMPDIR
        return _quantize_model(model, output, options, compare, sample, calibrate)


def _quantize_model(
    model: nn.Module | ModelSource, output: Path, options: QuantizeOptions, compare: Comparer | None,
    sample: Sampler | None, calibrate: Calibrator | None,
) -> QuantizeResult:
    source = load_source(model, options)
    if options.torch_output is not None and source.module is None:
        raise InputError("--torch needs a PyTorch MODEL (zoo:NAME, a .pt file, ...), not an .onnx file")
    calibration: list[Feeds] = []
    if options.calibrate is not None:
        if calibrate is None:
            raise InputError("static quantization needs a calibration sampler (attn_deploy.api.quantize makes one)")
        calibration = calibrate(source.artifact)
    stage = quantize_artifact(source.artifact, options, name=source.name, calibration=calibration)
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
    feeds = None
    if compare is not None and sample is not None and options.iterations > 0:
        try:
            feeds = sample(source.artifact)
        except InputError as e:
            if options.data is not None:
                raise
            warnings.append(f"parity and latency skipped: {e}")
    if compare is not None:
        from attn_deploy.check.detection import selection_of

        lowered = summary.float_lowered.proto if summary.float_lowered is not None else None
        report.update(compare(float_model, int8.proto, feeds, iterations=options.iterations, threads=options.threads,
                              float_lowered=lowered, detection=source.artifact.manifest.detection,
                              selection=selection_of(source.artifact.manifest)))
    else:
        report["parity"] = report["latency"] = None
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
