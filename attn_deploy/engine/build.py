"""``build_engine``: ONNX model -> serialized TensorRT / TensorRT-RTX engine + ``ENGINE.json`` report.

Steps: pick the runtime, resolve the optimisation profile, convert to float16 (``--fp16``), load
plugins, lower FusedAttention per node, parse, build through Polygraphy's config and engine
loaders, and write the engine and its report atomically. Building needs no GPU with TensorRT-RTX
(ahead-of-time for the requested compute capabilities); running the engine does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.attention_outputs import AttentionPoint
from attn_deploy.artifact.fileio import atomic_paths, output_lock, scratch_beside, sha256_file
from attn_deploy.artifact.io import engine_report_path, load_artifact, manifest_path_for, save_artifact
from attn_deploy.artifact.manifest import library_versions
from attn_deploy.artifact.stage import StageResult
from attn_deploy.captured import captured_output
from attn_deploy.engine.backend import TrtBackend, select_backend
from attn_deploy.engine.debug_attention import debug_points, mark_attention_outputs, network_outputs
from attn_deploy.engine.plugins import PluginState, load_plugins
from attn_deploy.engine.profiles import InputProfile, Shape, resolve_profile
from attn_deploy.engine.report import engine_layers, layer_summary, network_layers
from attn_deploy.errors import AttnDeployError, InputError
from attn_deploy.lower.fp16 import to_fp16
from attn_deploy.lower.trt import NodeLowering, lower_for_tensorrt

REPORT_FORMAT = "attn-deploy-engine-report/1"


@dataclass(frozen=True)
class BuildOptions:
    runtime: str = "auto"
    fp16: bool = False
    #: Keep float32 model inputs and outputs when converting to float16.
    keep_io_fp32: bool = True
    shapes: Mapping[str, Shape] = field(default_factory=dict)
    min_shapes: Mapping[str, Shape] = field(default_factory=dict)
    opt_shapes: Mapping[str, Shape] = field(default_factory=dict)
    max_shapes: Mapping[str, Shape] = field(default_factory=dict)
    timing_cache: Path | None = None
    workspace_mib: int | None = None
    plugins: tuple[Path, ...] = ()
    #: TensorRT-RTX ahead-of-time targets like ``8.6`` or ``SM86``; empty: the builder's default.
    compute_capabilities: tuple[str, ...] = ()
    #: Also write the lowered ONNX model that was parsed, and its manifest (for inspection or an ORT check).
    save_onnx: Path | None = None
    #: Keep each attention's output as an engine output, and only those (``check --per-attention``).
    debug_attention: bool = False


@dataclass
class BuildResult:
    engine_path: Path
    report_path: Path
    report: dict[str, Any]

    @property
    def lowering(self) -> list[dict[str, Any]]:
        lowering: list[dict[str, Any]] = self.report["fused_attention"]
        return lowering


def _parse_capabilities(backend: TrtBackend, items: tuple[str, ...]) -> list[tuple[int, int]]:
    if not items:
        return []
    if not backend.is_rtx:
        raise InputError("--compute-capability applies to TensorRT-RTX ahead-of-time builds; use --runtime tensorrt-rtx")
    known = sorted((c[2:] for c in dir(backend.trt.ComputeCapability) if c.startswith("SM")), key=int)
    caps = []
    for item in items:
        m = re.fullmatch(r"(?:sm_?)?(\d+)\.?(\d)", item.strip().lower())
        if not m or f"{m.group(1)}{m.group(2)}" not in known:
            raise InputError(f"--compute-capability {item!r} is not one {backend.name} {backend.version} targets: {', '.join(f'{k[:-1]}.{k[-1]}' for k in known)}")
        caps.append((int(m.group(1)), int(m.group(2))))
    return caps


@contextlib.contextmanager
def _polygraphy_messages() -> Iterator[list[str]]:
    """Route Polygraphy's (and TensorRT's) log to Python logging; collect errors for our messages.

    Polygraphy prints to stdout by default, which is where the CLI's results go.
    """
    from polygraphy.logger import G_LOGGER

    errors: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= G_LOGGER.ERROR:
                errors.append(record.getMessage())

    logger = logging.getLogger("Polygraphy")
    handler = _Collect()
    previous = (G_LOGGER.use_python_logging_system, logger.propagate, G_LOGGER.colors)
    G_LOGGER.use_python_logging_system = True
    G_LOGGER.colors = False
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield errors
    finally:
        logger.removeHandler(handler)
        G_LOGGER.use_python_logging_system, logger.propagate, G_LOGGER.colors = previous


def _clean(message: str) -> str:
    return re.sub(r"^\[[A-Z!]\]\s*", "", message.strip()).replace("\n", " ")


def _parse(backend: TrtBackend, model: onnx.ModelProto) -> tuple[Any, Any, Any]:
    """Parse into a strongly typed network.

    Goes around ``NetworkFromOnnxBytes`` because that loader turns parser errors into log lines
    and a generic exception; the parser's error objects name the failing node and op type.
    """
    from polygraphy.backend.trt import create_network
    from polygraphy.backend.trt import util as trt_util

    trt = backend.trt
    builder, network = create_network(strongly_typed=True)
    trt.init_libnvinfer_plugins(trt_util.get_trt_logger(), "")
    parser = trt.OnnxParser(network, trt_util.get_trt_logger())
    ok = parser.parse(model.SerializeToString())
    if parser.num_errors or not ok:
        nodes = list(model.graph.node)
        problems, qdq = [], False
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            index = e.node()
            node = nodes[index] if 0 <= index < len(nodes) else None
            where = f"node {node.name or index!r} ({(node.domain + '::') if node.domain else ''}{node.op_type})" if node else "the model"
            inner = e.node_operator()
            if node is not None and inner and inner != node.op_type:
                where += f", in its expansion at a {inner} node"
            problems.append(f"{where}: {_clean(e.desc())}")
            qdq = qdq or (node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"))
        unsupported = "UNSUPPORTED_NODE" in " ".join(str(parser.get_error(i).code()) for i in range(parser.num_errors))
        hint = (
            "; these Q/DQ nodes are ONNX Runtime's flavour: quantize for TensorRT with"
            " `attn-deploy quantize MODEL --calibrate DATA --for tensorrt` (symmetric int8, float biases)"
            if qdq
            else "; export the part of the model without it (attn-deploy export MODEL --submodule NAME, e.g. backbone)"
            if unsupported
            else ""
        )
        raise AttnDeployError(f"{backend.name} {backend.version} cannot parse {'; '.join(problems[:3]) or 'the model'}{hint}")
    return builder, network, parser


def _config(backend: TrtBackend, profile: list[InputProfile], options: BuildOptions, caps: list[tuple[int, int]]) -> Any:
    from polygraphy.backend.trt import CreateConfig, Profile

    trt = backend.trt
    prof = Profile()
    for p in profile:
        prof.add(p.name, min=p.min, opt=p.opt, max=p.max)
    kwargs: dict[str, Any] = {"profiles": [prof]}
    if options.timing_cache is not None and not backend.is_rtx:
        kwargs["load_timing_cache"] = str(options.timing_cache)
    if options.workspace_mib is not None:
        kwargs["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: options.workspace_mib << 20}
    if backend.is_rtx:
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        return CreateConfigRTX(compute_capabilities=caps or None, **kwargs)
    return CreateConfig(**kwargs)


def _serialize(backend: TrtBackend, network: tuple[Any, Any, Any], config: Any, options: BuildOptions) -> bytes:
    from polygraphy.backend.trt import EngineBytesFromNetwork
    from polygraphy.exception import PolygraphyException

    with _polygraphy_messages() as errors:
        try:
            cache = str(options.timing_cache) if options.timing_cache and not backend.is_rtx else None
            with captured_output(stdout=False) as printed:  # Myelin prints its exceptions on fd 2 too
                engine = EngineBytesFromNetwork(network, config=config, save_timing_cache=cache)()
        except PolygraphyException as e:
            details = "; ".join(_clean(m) for m in (errors or printed)[-3:]) or str(e)
            raise AttnDeployError(f"{backend.name} {backend.version} failed to build the engine: {details}") from None
    return bytes(memoryview(engine))


def _rejection(message: str) -> str:
    """The part of a builder error that says what it refused (TensorRT-RTX: after "CHECK(...) failed.")."""
    found = re.search(r"failed\.\s*([^.(]+)", message)
    return (found.group(1) if found else message).strip()[:200]


def _fallback_nodes(plans: list[NodeLowering]) -> list[str]:
    """Native-attention nodes to build as the body after the builder failed: those with a bias
    first (TensorRT-RTX has no dedicated kernel for many biased shapes), else all of them."""
    native = [p for p in plans if p.choice == "native-attention"]
    return [p.node for p in native if p.has_bias] or [p.node for p in native]


@dataclass
class _Debug:
    """``--debug-attention``: the attentions kept as outputs, those the network lacked, and its outputs."""

    kept: list[AttentionPoint] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _lower_and_build(
    backend: TrtBackend, typed: Artifact, plugin: bool, config: Any, options: BuildOptions
) -> tuple[StageResult[list[NodeLowering]], list[dict[str, Any]], bytes, _Debug]:
    """Lower, parse and build; when that fails, native-attention nodes fall back to the body and
    the build is retried (see :func:`_fallback_nodes`). ``--save-onnx`` is written on failure too."""
    rejected: dict[str, str] = {}
    points = debug_points(typed) if options.debug_attention else []
    while True:
        lowering = lower_for_tensorrt(typed, plugin=plugin, rejected=rejected)
        parsed = False
        try:
            with _polygraphy_messages():
                network = _parse(backend, lowering.artifact.proto)
            parsed = True
            debug = _Debug(*mark_attention_outputs(network[1], points)) if points else _Debug()
            debug.outputs = network_outputs(network[1])
            layers = network_layers(network[1])
            return lowering, layers, _serialize(backend, network, config, options), debug
        except AttnDeployError as e:
            # A parse error names its node: only one at an Attention node is the lowering's fault.
            suspects = _fallback_nodes(lowering.summary) if parsed or "(Attention)" in str(e) else []
            if suspects:
                rejected.update(dict.fromkeys(suspects, f"{backend.name} {backend.version}: {_rejection(str(e))}"))
                continue
            if options.save_onnx is None:
                raise
            save_artifact(lowering.artifact, options.save_onnx)
            raise AttnDeployError(f"{e}; the lowered model it parsed is in {options.save_onnx}") from None


def _fallback_note(plans: list[NodeLowering]) -> str | None:
    fell = [p for p in plans if p.fell_back_from]
    if not fell:
        return None
    why = fell[0].reason.split(": ", 1)[-1]
    return f"{len(fell)} FusedAttention node(s) fell back from native attention to the body ({why}): {', '.join(p.node for p in fell)}"


#: The engine report's ``precision`` for each Artifact precision (the report's values predate the manifest's).
_REPORT_PRECISION = {"fp32": "float32", "fp16": "float16", "int8": "int8"}


def _fp16_stage(artifact: Artifact, options: BuildOptions) -> tuple[Artifact, dict[str, Any] | None]:
    """``--fp16`` is decided here, once: the fp16 stage's Artifact carries precision ``fp16``."""
    if not options.fp16:
        return artifact, None
    result = to_fp16(artifact, keep_io_types=options.keep_io_fp32)
    return result.artifact, result.summary.to_dict()


def _refuse_overwriting_inputs(model: Path | None, engine_path: Path, report_path: Path, options: BuildOptions) -> None:
    """Every output is a file of its own: none is the model, its manifest, a plugin, or another output."""
    inputs = {"the model": model, "the model's manifest": manifest_path_for(model) if model else None}
    inputs.update({f"--plugin {p}": p for p in options.plugins})
    outputs = {"-o": engine_path, "the engine's build report": report_path}
    if options.save_onnx is not None:
        outputs.update({"--save-onnx": options.save_onnx, "--save-onnx's manifest": manifest_path_for(options.save_onnx)})
    seen: dict[str, str] = {os.path.realpath(p): what for what, p in inputs.items() if p is not None}
    for what, path in outputs.items():
        other = seen.setdefault(os.path.realpath(path), what)
        if other != what:
            raise InputError(f"{what} {path} is also {other}; pick another output path")


def build_engine(model: Artifact | str | Path, engine_path: str | Path, options: BuildOptions = BuildOptions()) -> BuildResult:
    """Build ``engine_path`` and ``engine_path.json`` from ``model`` (an Artifact or an .onnx path); both or neither appear."""
    engine_path = Path(engine_path)
    report_path = engine_report_path(engine_path)
    if engine_path.suffix == ".onnx":
        raise InputError(f"output {engine_path} ends in .onnx; name the engine MODEL.engine")
    _refuse_overwriting_inputs(model.path if isinstance(model, Artifact) else Path(model), engine_path, report_path, options)
    source = model if isinstance(model, Artifact) else load_artifact(model)
    with scratch_beside(engine_path):  # Polygraphy's temporary files and captured builder logs: none stays in $TMPDIR
        return _build(source, engine_path, report_path, options)


def _build(source: Artifact, engine_path: Path, report_path: Path, options: BuildOptions) -> BuildResult:
    """``build_engine`` once its inputs are checked: build, then publish the engine, its report and ``--save-onnx``."""
    backend = select_backend(options.runtime)
    caps = _parse_capabilities(backend, options.compute_capabilities)
    profile = resolve_profile(
        source.proto, source.manifest, shapes=options.shapes, min_shapes=options.min_shapes, opt_shapes=options.opt_shapes, max_shapes=options.max_shapes
    )
    started = time.perf_counter()
    typed, fp16_summary = _fp16_stage(source, options)
    with _polygraphy_messages():
        plugins: PluginState = load_plugins(backend, options.plugins)
    config = _config(backend, profile, options, caps)
    lowering, layers, engine, debug = _lower_and_build(backend, typed, plugins.fused_attention, config, options)
    plans = lowering.summary
    build_seconds = time.perf_counter() - started
    inspected, inspect_note = engine_layers(backend, engine)
    notes = [note] if (note := _fallback_note(plans)) else []
    if debug.missing:
        notes.append(f"--debug-attention: the network has no tensor {', '.join(debug.missing)} (the parser renamed it); "
                     "check --per-attention cannot compare those attentions")
    if options.timing_cache is not None and backend.is_rtx:
        notes.append(f"--timing-cache ignored: timing caches are no-ops in TensorRT-RTX (since 1.2; this is {backend.version})")

    report = {
        "format": REPORT_FORMAT,
        "source": str(source.path) if source.path is not None else source.manifest.source,
        "source_sha256": sha256_file(source.path) if source.path is not None else hashlib.sha256(source.proto.SerializeToString()).hexdigest(),
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "engine_bytes": len(engine),
        "build_seconds": round(build_seconds, 3),
        "runtime": backend.name,
        "versions": {**library_versions(), **backend.versions()},
        "options": {
            k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v)
            for k, v in asdict(options).items()
        },
        "compute_capabilities": [f"{a}.{b}" for a, b in caps] or "builder default",
        "profiles": [[p.to_dict() for p in profile]],
        "precision": _REPORT_PRECISION[typed.precision],
        "fp16_conversion": fp16_summary,
        "plugins": plugins.to_dict(),
        "fused_attention": [p.to_dict() for p in plans],
        "fallbacks": [{"node": p.node, "from": p.fell_back_from, "to": p.choice, "why": p.reason} for p in plans if p.fell_back_from],
        "network_outputs": debug.outputs,
        **({"debug_attention": [p.to_dict() for p in debug.kept]} if options.debug_attention else {}),
        "network_layers": {"summary": layer_summary(layers), "layers": layers},
        "engine_layers": inspected,
        "engine_layers_note": inspect_note,
        "notes": notes,
    }
    # The report is renamed first, the engine last (readers check the report's engine_sha256); the
    # --save-onnx pair is published whole just before them.
    with output_lock(engine_path), atomic_paths(report_path, engine_path) as (tmp_report, tmp_engine):
        tmp_engine.write_bytes(engine)
        tmp_report.write_text(json.dumps(report, indent=2) + "\n")
        if options.save_onnx is not None:  # with its manifest: precision and lowering travel with it
            save_artifact(lowering.artifact, options.save_onnx)
    return BuildResult(engine_path, report_path, report)
