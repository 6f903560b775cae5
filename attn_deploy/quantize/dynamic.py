"""``onnxruntime.quantization.quantize_dynamic`` on a prepared model, with the choices made explicit.

Only weight projections are quantized: MatMul with a constant second input (and Conv with
``include_convs``). FusedAttention, Softmax and normalisation stay float: the op contract keeps
softmax and accumulation in float32, and normalisation is cheap and precision-sensitive.
``quantize_dynamic`` leaves model-local functions alone, but the result is re-checked here: IR
version 10, the FusedAttention function and the ``attn_deploy`` opset import must survive.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION

WeightType = Literal["int8", "uint8"]

#: Kept float on purpose, with the reason the report gives.
FLOAT_BY_DESIGN = {
    OP_TYPE: "attention kept float32 (op contract); --quantize-attention runs its P·V product in int8",
    "Softmax": "softmax kept float32",
    "LayerNormalization": "normalisation kept float",
    "BatchNormalization": "normalisation kept float",
    "InstanceNormalization": "normalisation kept float",
    "GroupNormalization": "normalisation kept float",
}
QUERY_KEY_SUFFIX = "_query_key_matmul"
QUERY_KEY_REASON = "query/key projection kept float (default; --int8-qk quantizes it): softmax's exponential amplifies its int8 error"
CONV_REASON = "Conv left float: ONNX Runtime's ConvInteger is slower than fp32 Conv on CPU (--include-convs to quantize anyway)"


@dataclass(frozen=True)
class Candidate:
    """A node ``quantize_dynamic`` is asked to quantize, or one left float with the reason."""

    name: str
    op_type: str
    reason: str | None = None  # None: asked to quantize


def _initializer_names(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def node_name(node: onnx.NodeProto) -> str:
    """The name a Candidate gives ``node``: its own, or op type and first output when it has none."""
    return node.name or f"{node.op_type}:{node.output[0]}"


def matches(node: onnx.NodeProto, patterns: Sequence[str]) -> str | None:
    """The first pattern (fnmatch on node name or op type) that ``node`` matches."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(node.name, pattern) or fnmatch.fnmatchcase(node.op_type, pattern):
            return pattern
    return None


def plan(
    model: onnx.ModelProto, *, exclude: Sequence[str] = (), include_convs: bool = False, float_qk: bool = False
) -> list[Candidate]:
    """Every main-graph node that matters to the report, with what will happen to it."""
    constants = _initializer_names(model)
    out: list[Candidate] = []
    for node in model.graph.node:
        name = node_name(node)
        if node.op_type in ("MatMul", "Conv") and node.domain == "":
            if node.op_type == "Conv" and not include_convs:
                out.append(Candidate(name, node.op_type, CONV_REASON))
            elif len(node.input) < 2 or node.input[1] not in constants:
                out.append(Candidate(name, node.op_type, "second input is an activation, not a weight"))
            elif float_qk and node.name.endswith(QUERY_KEY_SUFFIX):
                out.append(Candidate(name, node.op_type, QUERY_KEY_REASON))
            elif (pattern := matches(node, exclude)) is not None:
                out.append(Candidate(name, node.op_type, f"excluded by --exclude {pattern}"))
            else:
                out.append(Candidate(name, node.op_type))
        elif node.op_type in FLOAT_BY_DESIGN:
            out.append(Candidate(name, node.op_type, FLOAT_BY_DESIGN[node.op_type]))
    return out


def restore_contract(quantized: onnx.ModelProto, prepared: onnx.ModelProto) -> None:
    """Put back what a quantizer may drop: IR version, model-local functions, our opset import."""
    quantized.ir_version = IR_VERSION
    have = {(f.domain, f.name) for f in quantized.functions}
    quantized.functions.extend(f for f in prepared.functions if (f.domain, f.name) not in have)
    if any(f.domain == DOMAIN for f in quantized.functions) and not any(i.domain == DOMAIN for i in quantized.opset_import):
        quantized.opset_import.append(onnx.helper.make_opsetid(DOMAIN, OPSET_VERSION))


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Silence onnxruntime.quantization's warnings (its "run pre-processing" advice) during one call.

    Scoped and restored after: a library call must not change the root logger's level. The
    quantizer logs both through its own loggers and through ``logging.warning`` (the root logger),
    so the latter are dropped by a filter that looks only at records from its package.
    """
    logger = logging.getLogger("onnxruntime.quantization")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    root = logging.getLogger()
    quiet = _DropQuantizerWarnings()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        logger.setLevel(previous)


class _DropQuantizerWarnings(logging.Filter):
    """Drops records below ERROR logged from ``onnxruntime/quantization`` source files."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or _QUANTIZER_FILES not in record.pathname.replace("\\", "/")


_QUANTIZER_FILES = "onnxruntime/quantization/"


def quantize(
    prepared: onnx.ModelProto,
    candidates: Sequence[Candidate],
    *,
    per_channel: bool = True,
    weight_type: WeightType = "int8",
    reduce_range: bool = True,
) -> onnx.ModelProto:
    """Dynamic int8 of the ``candidates`` without a reason; everything else untouched.

    ``reduce_range`` quantizes weights to 7 bits. ONNX Runtime's u8s8 kernels on x86 CPUs without
    VNNI (AVX2, AVX-512F) multiply with VPMADDUBSW, whose int16 sums saturate with full 8-bit
    weights: on this project's AVX2 CI machine a SAGAN branch fell to cosine 0.95 without it, 0.999+
    with it. Full range is exact only where the model will run on VNNI/AMX CPUs.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    wanted = {c.name for c in candidates if c.reason is None}
    op_types = sorted({c.op_type for c in candidates if c.reason is None})
    skip = [n.name for n in prepared.graph.node if n.op_type in op_types and n.name not in wanted]
    with quiet_quantizer(), tempfile.TemporaryDirectory(prefix="attn_deploy_q_") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(prepared, src)
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=op_types,
            nodes_to_exclude=skip,
            per_channel=per_channel,
            weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
            reduce_range=reduce_range,
            extra_options={"MatMulConstBOnly": True},
        )
        quantized = onnx.load_model(dst)
    restore_contract(quantized, prepared)
    return quantized


def quantized_node_names(prepared: onnx.ModelProto, quantized: onnx.ModelProto, candidates: Sequence[Candidate]) -> set[str]:
    """Candidates that ``quantize_dynamic`` actually replaced (gone from the graph by name)."""
    remaining = {n.name for n in quantized.graph.node}
    return {c.name for c in candidates if c.reason is None and c.name not in remaining}
