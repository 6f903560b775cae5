"""Static (calibrated) int8: Q/DQ pairs around convolutions and projections, attention kept float.

Dynamic int8 quantizes only MatMul weights; the convolutions that make most of a detector's time
stay float. Calibrated Q/DQ quantizes them too: ONNX Runtime fuses each DequantizeLinear → Conv →
QuantizeLinear into one int8 convolution. Everything here goes through
``onnxruntime.quantization``: ``quantize_static`` in QDQ format with per-channel weights, its
calibration cache (so that choosing what to keep float does not calibrate again), and
``qdq_loss_debug`` for each node's error.

The ops that lie between two of those convolutions (``GLUE_OP_TYPES``: residual adds, SiLU's
sigmoid and multiply, concatenations, splits, pooling, resizes) are quantized too, unless
``--float-glue``: ONNX Runtime runs each one on int8 tensors (QLinearAdd, QLinearMul,
QLinearSigmoid, QLinearConcat; pooling, splits and resizes directly on uint8), so activations stay
int8 from one convolution to the next instead of going back to float at every add. On the
YOLO-style detector (benchmarks/_detectors.py) that took static int8 from 1.09-1.14x to
1.46-1.62x its plain fp32 export (four runs).

For TensorRT (``--for tensorrt``) the Q/DQ pairs are what its builder accepts: int8 activations with a
zero point of 0 (symmetric), biases left float, convolutions and projections only (TensorRT fuses
what lies between them itself). TensorRT-RTX 1.7's parser refuses the ONNX Runtime flavour on both
counts ("Non-zero zero point is not supported"; an int32 bias DequantizeLinear) and builds this one.

Which nodes stay float: FusedAttention, softmax and normalisations by design, ``--exclude`` by the
user, and, when the model's outputs drift below ``target_cosine`` on the calibration samples (for a
detector: when its detections no longer match as ``check``'s gate demands; boxes, scores and labels
reorder, so their cosine says nothing), the nodes whose own quantization adds the most noise (lowest SQNR of the activation each one writes,
measured on the Q/DQ model as ``qdq_loss_debug`` does), 1, 2, 4, ... of them until the outputs are
back above it.

Memory is planned before calibrating (``calibration_memory``): the calibration runs in passes of as
many samples as fit, or as ``minmax`` when not even one sample's activations fit, or is refused with
the estimate. The output cosines and the SQNR ranking read one sample at a time (the ranking, on
``defaults.SQNR_SAMPLES`` of them, reading as many tensors per pass as fit).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from attn_deploy import defaults
from attn_deploy.check.detection import (
    DetectionResult,
    DetectionSelection,
    DetectionThresholds,
    Roles,
    detection_roles,
    match_detections,
)
from attn_deploy.errors import InputError
from attn_deploy.quantize.calibration_memory import CalibrationPlan, calibrated_activations, plan_calibration, sqnr_groups
from attn_deploy.quantize.dynamic import Candidate, matches, node_name, quiet_quantizer, restore_contract

Feeds = dict[str, np.ndarray]
#: Ops the static path quantizes (with a constant weight). Conv runs as QLinearConv in ONNX Runtime.
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")
#: Whose Q/DQ flavour: ONNX Runtime's (uint8 activations with a zero point, int32 biases, fastest on
#: its CPU kernels) or TensorRT's (symmetric int8 activations, float biases).
QdqFor = Literal["onnxruntime", "tensorrt"]
#: Ops between them that ONNX Runtime runs on int8 tensors once they sit between Q/DQ pairs.
GLUE_OP_TYPES = ("Add", "Mul", "Sigmoid", "LeakyRelu", "Concat", "Split", "Slice", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Resize")
AUTO_REASON = "kept float automatically: its int8 output noise (SQNR {sqnr:.1f} dB) was among the largest while outputs missed cosine {target} or detections stopped matching"


@dataclass(frozen=True)
class StaticOutcome:
    """The Q/DQ model, the nodes left float automatically, each quantized node's SQNR, and the output cosines."""

    model: onnx.ModelProto
    candidates: tuple[Candidate, ...]
    sqnr_db: dict[str, float] = field(default_factory=dict)
    output_cosine: dict[str, float] = field(default_factory=dict)
    rounds: int = 1
    samples: int = 0
    calibration: CalibrationPlan | None = None
    #: A detector's worst calibration sample, its detections matched against the float model's.
    detection: DetectionResult | None = None


@dataclass(frozen=True)
class Agreement:
    """How the Q/DQ model's outputs agree with the float model's over the calibration samples:
    the cosine of each float output that is not a detection, and a detector's worst sample."""

    cosine: dict[str, float]
    detection: DetectionResult | None = None

    def reached(self, target_cosine: float) -> bool:
        return all(c >= target_cosine for c in self.cosine.values()) and (self.detection is None or self.detection.passed)


def quantize_static(
    prepared: onnx.ModelProto,
    candidates: Sequence[Candidate],
    calibration: Sequence[Feeds],
    *,
    method: str = "percentile",
    per_channel: bool = True,
    reduce_range: bool = True,
    target_cosine: float | None = 0.999,
    detection: Roles | None = None,
    selection: DetectionSelection | None = None,
    min_matched: float = defaults.DETECTION_MIN_MATCHED,
    qdq_for: QdqFor = "onnxruntime",
) -> StaticOutcome:
    """Q/DQ int8 of the ``candidates`` without a reason, calibrated on ``calibration``.

    With ``target_cosine``, nodes are returned to float (worst SQNR first) until every float
    output's cosine to the float model, over the calibration samples, reaches it, and a detector's
    detections (``detection``: its outputs by role, as the manifest records them) match the float
    model's on every sample (``min_matched`` of them, at the gate's IoU and score thresholds, borderline
    detections left out when the detector's ``selection`` is known).
    ``qdq_for`` picks the Q/DQ flavour (see the module docstring).
    """
    if not calibration:
        raise InputError("static quantization needs calibration samples: pass --calibrate DATA (images or .npz)")
    if method not in defaults.CALIBRATE_METHODS:
        raise InputError(f"--calibrate-method must be one of {', '.join(defaults.CALIBRATE_METHODS)}, got {method!r}")
    plan = list(candidates)
    with quiet_quantizer(), tempfile.TemporaryDirectory(prefix="attn_deploy_sq_") as tmp:
        folder = Path(tmp)
        float_path = folder / "float.onnx"
        onnx.save_model(prepared, float_path)
        activations = calibrated_activations(float_path, STATIC_OP_TYPES, calibration[0])
        calibrating = plan_calibration(activations, len(calibration), method)
        ranked = calibration[: defaults.SQNR_SAMPLES]
        reference = _session(float_path)
        rounds, demote = 0, 0
        while True:
            rounds += 1
            wanted = [c for c in plan if c.reason is None]
            if not wanted:  # everything went back to float
                qdq = onnx.ModelProto()
                qdq.CopyFrom(prepared)
                agreement = Agreement(dict.fromkeys((o.name for o in reference.get_outputs()), 1.0))
                break
            qdq = _quantize(float_path, folder, plan, calibration, calibrating, per_channel, reduce_range, qdq_for)
            agreement = _agreement(reference, _session(folder / "int8.onnx"), calibration, detection,
                                   DetectionThresholds(min_matched=min_matched), selection)
            if target_cosine is None or agreement.reached(target_cosine):
                break
            sqnr = node_sqnr(folder / "int8.onnx", prepared, wanted, ranked, activations.sizes, activations.weights)
            demote = min(len(wanted), max(1, 2 * demote))
            worst = sorted(wanted, key=lambda c: sqnr.get(c.name, math.inf))[:demote]
            plan = [replace(c, reason=AUTO_REASON.format(sqnr=sqnr.get(c.name, math.nan), target=target_cosine))
                    if c in worst else c for c in plan]
        wanted = [c for c in plan if c.reason is None]
        sqnr = node_sqnr(folder / "int8.onnx", prepared, wanted, ranked, activations.sizes, activations.weights) if wanted else {}
        del reference
    restore_contract(qdq, prepared)
    return StaticOutcome(qdq, tuple(plan), sqnr, agreement.cosine, rounds, len(calibration), calibrating, agreement.detection)


def _quantize(float_path: Path, folder: Path, plan: Sequence[Candidate], calibration: Sequence[Feeds],
              calibrating: CalibrationPlan, per_channel: bool, reduce_range: bool, qdq_for: QdqFor) -> onnx.ModelProto:
    wanted = [c.name for c in plan if c.reason is None]
    # The calibrators print their progress on stdout, where `quantize --json` writes its report.
    with contextlib.redirect_stdout(io.StringIO()):
        _ort_quantize(float_path, folder, wanted, plan, _reader(calibration), calibrating, per_channel, reduce_range, qdq_for)
    return onnx.load_model(folder / "int8.onnx")


def _ort_quantize(float_path: Path, folder: Path, wanted: list[str], plan: Sequence[Candidate], samples: Any,
                  calibrating: CalibrationPlan, per_channel: bool, reduce_range: bool, qdq_for: QdqFor) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    tensorrt = qdq_for == "tensorrt"

    ort_quantize_static(
        float_path, folder / "int8.onnx", samples,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(dict.fromkeys([*STATIC_OP_TYPES, *(c.op_type for c in plan if c.reason is None)])),
        nodes_to_quantize=wanted or None,
        nodes_to_exclude=[c.name for c in plan if c.reason is not None],
        per_channel=per_channel,
        reduce_range=reduce_range,  # 7-bit weights: see quantize.dynamic.quantize on AVX2 without VNNI
        activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method={"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
                          "entropy": CalibrationMethod.Entropy}[calibrating.method],
        calibration_cache_path=folder / "calibration.json",  # rounds after the first reuse the ranges
        extra_options={"ActivationSymmetric": tensorrt, "WeightSymmetric": True, "QuantizeBias": not tensorrt,
                       **calibrating.extra_options()},
    )


def _reader(samples: Sequence[Feeds]) -> Any:
    """The samples as the ``CalibrationDataReader`` onnxruntime.quantization reads (whole, or a range per pass)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Samples(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items = iter(samples)

        def __len__(self) -> int:
            return len(samples)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items = iter(samples[start_index:end_index])

        def get_next(self) -> Feeds | None:
            return next(self.items, None)

    return Samples()


def _session(path: Path, optimize: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:  # keep every Q/DQ pair a node of its own, as qdq_loss_debug does
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _agreement(reference: Any, candidate: Any, samples: Sequence[Feeds], detection: Roles | None,
               thresholds: DetectionThresholds, selection: DetectionSelection | None) -> Agreement:
    """Per float output, the cosine over all samples, read one sample at a time (0 where shapes differ);
    a detector's outputs are matched as detections instead, and the worst sample kept."""
    names = [o.name for o in reference.get_outputs()]
    roles = detection_roles(names, detection)
    skip = set(roles.values()) if roles else set()
    worst: DetectionResult | None = None
    sums: dict[str, np.ndarray] = {}
    for feeds in samples:
        ref, cand = reference.run(None, feeds), candidate.run(names, feeds)
        if roles:
            found = match_detections(dict(zip(names, ref)), dict(zip(names, cand)), thresholds, roles, selection)
            if worst is None or (found.passed, found.matched_fraction) < (worst.passed, worst.matched_fraction):
                worst = found
        for name, a, b in zip(names, ref, cand):
            if name in skip or a.dtype.kind != "f" or name in sums and not np.isfinite(sums[name][0]):
                continue
            if a.shape != b.shape:
                sums[name] = np.array([np.nan, 0.0, 0.0])
                continue
            a64, b64 = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
            sums[name] = sums.get(name, np.zeros(3)) + np.array([a64 @ b64, a64 @ a64, b64 @ b64])
    out: dict[str, float] = {}
    for name, (dot, aa, bb) in sums.items():
        if not np.isfinite(dot):
            out[name] = 0.0
            continue
        norm = math.sqrt(aa * bb)
        out[name] = float(dot / norm) if norm > 0 else float(aa == bb)
    return Agreement(out, worst)


def _qdq_pairs(qdq: onnx.ModelProto, tensors: Iterable[str]) -> dict[str, tuple[str, str]]:
    """For each float tensor, its value before and after its Q/DQ pair in ``qdq`` (the names ``qdq_loss_debug`` matches)."""
    from onnxruntime.quantization.qdq_loss_debug import DEQUANT_OUTPUT_SUFFIX, QUANT_INPUT_SUFFIX

    names = {o for n in qdq.graph.node for o in n.output}
    pairs = {}
    for x in tensors:
        if x + QUANT_INPUT_SUFFIX in names:
            pairs[x] = (x + QUANT_INPUT_SUFFIX, x)
        elif x + DEQUANT_OUTPUT_SUFFIX in names:
            pairs[x] = (x, x + DEQUANT_OUTPUT_SUFFIX)
        elif x + DEQUANT_OUTPUT_SUFFIX + "_1" in names:
            pairs[x] = (x, x + DEQUANT_OUTPUT_SUFFIX + "_1")
    return pairs


def node_sqnr(qdq_path: Path, prepared: onnx.ModelProto, nodes: Sequence[Candidate], samples: Sequence[Feeds],
              sizes: dict[str, int], weights: int) -> dict[str, float]:
    """SQNR (dB) of the activation each node writes, before against after its Q/DQ pair (local noise).

    ``qdq_loss_debug``'s measure (``compute_signal_to_quantization_noice_ratio`` over all samples),
    streamed: one sample at a time, as many tensors per pass as fit (``sizes``: bytes per tensor).
    """
    outputs = {n.name: n.output[0] for n in prepared.graph.node}
    wanted = {c.name: outputs[c.name] for c in nodes if c.name in outputs}
    qdq = onnx.load_model(qdq_path)
    pairs = _qdq_pairs(qdq, wanted.values())
    groups = sqnr_groups({x: sizes.get(x, 0) for x in pairs}, weights)
    power: dict[str, list[float]] = {}
    augmented = qdq_path.with_name("sqnr_debug.onnx")
    for group in groups:
        model = onnx.ModelProto()
        model.CopyFrom(qdq)
        have = {o.name for o in model.graph.output}
        read = [t for x in group for t in pairs[x]]
        model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                                  for t in dict.fromkeys(read) if t not in have)
        onnx.save_model(model, augmented)
        session = _session(augmented, optimize=False)
        for feeds in samples:
            values = dict(zip(read, session.run(read, feeds)))
            for x in group:
                pre, post = (values[t].astype(np.float64).ravel() for t in pairs[x])
                signal, noise = power.setdefault(x, [0.0, 0.0])
                power[x] = [signal + float(pre @ pre), noise + float((pre - post) @ (pre - post))]
        del session
    augmented.unlink(missing_ok=True)
    eps = float(np.finfo(float).eps)
    db = {x: 20 * math.log10(max(math.sqrt(s), eps) / max(math.sqrt(n), eps)) for x, (s, n) in power.items()}
    return {name: db[x] for name, x in wanted.items() if x in db}


#: Passed through when deciding what lies between two weighted nodes (ONNX Runtime folds them into a Q/DQ chain).
_TRANSPARENT = {"Relu", "Clip", "Reshape", "Transpose", "Flatten", "Identity", "Squeeze", "Unsqueeze"}


def glue_candidates(model: onnx.ModelProto, weighted: Sequence[Candidate], exclude: Sequence[str] = ()) -> list[Candidate]:
    """The main graph's ``GLUE_OP_TYPES`` nodes that lie between ``weighted`` nodes to quantize: reached
    from one and reaching one through glue (or pass-through ops) only. A detector's box decoding after
    its last convolution, or arithmetic before its first, stays float: int8 coordinates would move boxes.
    ``exclude`` (as ``--exclude``) keeps matching nodes float, with the reason."""
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    anchors = {c.name for c in weighted if c.reason is None and c.op_type in STATIC_OP_TYPES}
    passable = set(GLUE_OP_TYPES) | _TRANSPARENT

    def reaches(start: onnx.NodeProto, step: Callable[[onnx.NodeProto], list[onnx.NodeProto]]) -> bool:
        seen: set[int] = set()
        todo = list(step(start))
        while todo:
            node = todo.pop()
            if node_name(node) in anchors:
                return True
            if id(node) in seen or node.op_type not in passable or node.domain != "":
                continue
            seen.add(id(node))
            todo.extend(step(node))
        return False

    def upstream(n: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [producer[i] for i in n.input if i in producer]

    def downstream(n: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [c for o in n.output for c in consumers.get(o, [])]

    out = []
    for node in nodes:
        if node.op_type in GLUE_OP_TYPES and node.domain == "" and reaches(node, upstream) and reaches(node, downstream):
            pattern = matches(node, exclude)
            out.append(Candidate(node_name(node), node.op_type, None if pattern is None else f"excluded by --exclude {pattern}"))
    return out


def quantized_static_names(quantized: onnx.ModelProto, candidates: Sequence[Candidate]) -> set[str]:
    """Candidates the quantizer really made int8 (Q/DQ keeps the node names): a weighted node whose
    weight comes from a DequantizeLinear; a glue node that reads a DequantizeLinear's output and
    whose output goes into a QuantizeLinear (what ONNX Runtime fuses into one int8 op; reading one
    alone only means the node before it is int8)."""
    dequantized = {n.output[0] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    requantized = {n.input[0] for n in quantized.graph.node if n.op_type == "QuantizeLinear"}
    by_name = {n.name: n for n in quantized.graph.node}

    def reads_int8(node: onnx.NodeProto) -> bool:
        if node.op_type in GLUE_OP_TYPES:
            return bool(node.input) and node.input[0] in dequantized and any(o in requantized for o in node.output)
        return len(node.input) > 1 and node.input[1] in dequantized

    return {c.name for c in candidates if c.reason is None and c.name in by_name and reads_int8(by_name[c.name])}


def static_report(outcome: StaticOutcome, method: str, target: float | None) -> dict[str, Any]:
    """The report's ``static`` section: calibration, automatic choices, per-node SQNR, output cosines."""
    return {
        "calibration": outcome.calibration.report() if outcome.calibration else {"method": method, "samples": outcome.samples},
        "target_cosine": target,
        "rounds": outcome.rounds,
        "kept_float_automatically": [c.name for c in outcome.candidates if c.reason and c.reason.startswith("kept float automatically")],
        "node_sqnr_db": dict(sorted(outcome.sqnr_db.items(), key=lambda kv: kv[1])),
        "output_cosine": outcome.output_cosine,
        **({"detection": outcome.detection.to_dict()} if outcome.detection else {}),
    }
