"""``quantize_model``: MODEL or .onnx -> dynamic int8 ONNX model with attention lowered for
ONNX Runtime (+ report), atomically."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from attn_deploy.errors import InputError
from attn_deploy.artifact.graph import IR_VERSION, fused_attention_nodes
from attn_deploy.artifact.fileio import atomic_path
from attn_deploy.lower import lower_model
from attn_deploy.ops.contract import OP_TYPE
from attn_deploy.quantize.attention import use_int8_attention_body
from attn_deploy.quantize.dynamic import WeightType, plan, quantize, quantized_node_names
from attn_deploy.quantize.prepare import prepare
from attn_deploy.quantize.report import measure, node_report, op_counts
from attn_deploy.runtime import OrtRunner
from attn_deploy.runtime.base import Feeds


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


@dataclass
class QuantizeResult:
    output: Path
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Source:
    model: onnx.ModelProto
    feeds: Callable[[], Feeds | None]
    module: Any = None  # the torch module, when IN was a MODEL


def _random_feeds(model: onnx.ModelProto) -> Feeds | None:
    """Standard-normal inputs of the graph's static shapes; None if a dimension is symbolic."""
    rng = np.random.default_rng(1)
    inits = {i.name for i in model.graph.initializer}
    feeds: Feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if any(d is None for d in dims) or vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            return None
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load_model(path)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not an ONNX model ({first}); pass an .onnx file or a MODEL that `export` accepts") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise InputError(f"{path} is not an ONNX model (no graph in it); pass an .onnx file or a MODEL that `export` accepts")
    return model


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(1)


def _load_source(spec: str, tmp: Path, options: QuantizeOptions) -> _Source:
    path = Path(spec)
    if path.suffix == ".onnx" or (path.is_file() and _first_byte(path) == b"\x08"):  # a ModelProto starts with ir_version
        if not path.is_file():
            raise InputError(f"{spec}: no such file")
        model = _load_onnx(path)
        return _Source(model, lambda: _random_feeds(model))
    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import load_model

    loaded = load_model(spec, arch=options.arch, unsafe_load=options.unsafe_load)
    result = export_model(loaded, tmp / "exported.onnx", ExportOptions(input_shapes=options.input_shapes))
    model = onnx.load_model(result.onnx_path)
    shapes = options.input_shapes or loaded.input_shapes

    def feeds() -> Feeds:
        names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        return {n: t.numpy() for n, t in zip(names, loaded.example_inputs(shapes, seed=1))}

    return _Source(model, feeds, loaded.module)


def _nothing_to_quantize(spec: str, model: onnx.ModelProto, options: QuantizeOptions) -> InputError:
    ops = ", ".join(f"{k} x{v}" for k, v in op_counts(model).items())
    hint = "" if options.include_convs else "; --include-convs also quantizes the remaining Conv nodes"
    return InputError(
        f"nothing to quantize in {spec}: no MatMul/Gemm with constant weights and no 1x1 Conv projection "
        f"outside --exclude (it has {ops}){hint}"
    )


def quantize_model(spec: str, output: Path, options: QuantizeOptions = QuantizeOptions()) -> QuantizeResult:
    """Quantize MODEL (exported first) or an .onnx file to ``output``; nothing is written on error."""
    output = Path(output)
    if output.suffix != ".onnx":
        raise InputError(f"output {output} must end in .onnx")
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="attn_deploy_quantize_") as tmp_dir:
        tmp = Path(tmp_dir)
        source = _load_source(spec, tmp, options)
        if options.torch_output is not None and source.module is None:
            raise InputError("--torch needs a PyTorch MODEL (zoo:NAME, a .pt file, ...), not an .onnx file")
        source.model.ir_version = IR_VERSION
        prepared, preparation = prepare(source.model, separate_query_key=options.float_qk)
        candidates = plan(prepared, exclude=options.exclude, include_convs=options.include_convs, float_qk=options.float_qk)
        if options.quantize_attention:
            candidates = [
                replace(c, reason="Q·Kᵀ and softmax kept float32; its P·V product runs in int8 (--quantize-attention)") if c.op_type == OP_TYPE else c
                for c in candidates
            ]
        wanted = [c for c in candidates if c.reason is None]
        has_attention = bool(fused_attention_nodes(prepared))
        if not wanted and not (options.quantize_attention and has_attention):
            raise _nothing_to_quantize(spec, prepared, options)
        if options.include_convs and any(c.op_type == "Conv" for c in wanted):
            warnings.append("--include-convs: ONNX Runtime's ConvInteger is often slower than fp32 Conv on CPU; compare the latencies below")
        quantized = quantize(prepared, candidates, per_channel=options.per_channel, weight_type=options.weight_type, reduce_range=options.reduce_range) if wanted else prepared
        if options.quantize_attention and has_attention:
            use_int8_attention_body(quantized)
        done = quantized_node_names(prepared, quantized, candidates)
        if not done and not (options.quantize_attention and has_attention):
            raise _nothing_to_quantize(spec, prepared, options)  # quantize_dynamic declined every candidate
        lowering: list[dict[str, Any]] = []
        float_lowered: onnx.ModelProto | None = None
        if options.lower and has_attention and not options.quantize_attention:
            quantized, choices = lower_model(quantized)
            lowering = [c.to_json() for c in choices]
            float_lowered, _ = lower_model(source.model)

        float_path = tmp / "float.onnx"
        onnx.save_model(source.model, float_path)
        int8_path = tmp / "int8.onnx"
        onnx.save_model(quantized, int8_path)
        float_lowered_path = None
        if float_lowered is not None:
            float_lowered_path = tmp / "float-lowered.onnx"
            onnx.save_model(float_lowered, float_lowered_path)
        report: dict[str, Any] = {
            "source": spec,
            "output": str(output),
            "options": {
                "per_channel": options.per_channel,
                "weight_type": options.weight_type,
                "exclude": list(options.exclude),
                "include_convs": options.include_convs,
                "reduce_range": options.reduce_range,
                "quantize_attention": options.quantize_attention,
                "float_qk": options.float_qk,
                "lower": options.lower,
            },
            "size_bytes": {"float": float_path.stat().st_size, "int8": int8_path.stat().st_size},
            "preparation": preparation.to_dict(),
            "nodes": node_report(candidates, done),
            "attention_int8_pv": bool(options.quantize_attention and has_attention),
            "attention_lowering": lowering,
            "ops_after": op_counts(quantized),
        }
        report["size_bytes"]["ratio"] = report["size_bytes"]["int8"] / report["size_bytes"]["float"]
        feeds = source.feeds() if options.iterations > 0 else None
        if feeds is not None:
            report.update(measure(float_path, int8_path, feeds, options.iterations, options.threads, float_lowered_path))
        else:
            OrtRunner(int8_path, ["CPUExecutionProvider"])  # it must still load in plain ONNX Runtime
            report["parity"] = report["latency"] = None
            if options.iterations > 0:
                warnings.append("parity and latency skipped: the model has a symbolic input dimension")
        with atomic_path(output) as final_tmp:
            final_tmp.write_bytes(int8_path.read_bytes())
            if options.torch_output is not None:
                from attn_deploy.quantize.torch_side import save_torch_quantized

                report["torch"] = save_torch_quantized(source.module, options.torch_output)
                warnings.append(str(report["torch"]["note"]))
    report["warnings"] = warnings
    return QuantizeResult(output, report, warnings)


def write_report(report: dict[str, Any], path: Path) -> None:
    from attn_deploy.artifact.fileio import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(report, indent=2) + "\n").encode())
