"""Static (calibrated) int8: Q/DQ pairs around convolutions and projections, attention kept float.

Dynamic int8 quantizes only MatMul weights; the convolutions that make most of a detector's time
stay float. Calibrated Q/DQ quantizes them too: ONNX Runtime fuses each DequantizeLinear → Conv →
QuantizeLinear into one int8 convolution. Everything here goes through
``onnxruntime.quantization``: ``quantize_static`` in QDQ format with per-channel weights, its
calibration cache (so that choosing what to keep float does not calibrate again), and
``qdq_loss_debug`` for each node's error.

Which nodes stay float: FusedAttention, softmax and normalisations by design, ``--exclude`` by the
user, and, when the model's outputs drift below ``target_cosine`` on the calibration samples, the
nodes whose own quantization adds the most noise (lowest SQNR of the activation each one writes,
measured by ``qdq_loss_debug``), 1, 2, 4, ... of them until the outputs are back above it.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from attn_deploy import defaults
from attn_deploy.errors import InputError
from attn_deploy.quantize.dynamic import Candidate, quiet_quantizer, restore_contract

Feeds = dict[str, np.ndarray]
#: Ops the static path quantizes (with a constant weight). Conv runs as QLinearConv in ONNX Runtime.
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")
AUTO_REASON = "kept float automatically: its int8 output noise (SQNR {sqnr:.1f} dB) was among the largest while outputs missed cosine {target}"


@dataclass(frozen=True)
class StaticOutcome:
    """The Q/DQ model, the nodes left float automatically, each quantized node's SQNR, and the output cosines."""

    model: onnx.ModelProto
    candidates: tuple[Candidate, ...]
    sqnr_db: dict[str, float] = field(default_factory=dict)
    output_cosine: dict[str, float] = field(default_factory=dict)
    rounds: int = 1
    samples: int = 0


def quantize_static(
    prepared: onnx.ModelProto,
    candidates: Sequence[Candidate],
    calibration: Sequence[Feeds],
    *,
    method: str = "percentile",
    per_channel: bool = True,
    reduce_range: bool = True,
    target_cosine: float | None = 0.999,
) -> StaticOutcome:
    """Q/DQ int8 of the ``candidates`` without a reason, calibrated on ``calibration``.

    With ``target_cosine``, nodes are returned to float (worst SQNR first) until every float
    output's cosine to the float model, over the calibration samples, reaches it.
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
        reference = _run(float_path, calibration)
        rounds, demote = 0, 0
        while True:
            rounds += 1
            wanted = [c for c in plan if c.reason is None]
            if not wanted:  # everything went back to float
                qdq, cosines = onnx.ModelProto(), dict.fromkeys(reference[0], 1.0)
                qdq.CopyFrom(prepared)
                break
            qdq = _quantize(float_path, folder, plan, calibration, method, per_channel, reduce_range)
            cosines = _cosines(reference, _run(folder / "int8.onnx", calibration))
            if target_cosine is None or all(c >= target_cosine for c in cosines.values()):
                break
            sqnr = node_sqnr(float_path, folder / "int8.onnx", prepared, wanted, calibration[:4], folder)
            demote = min(len(wanted), max(1, 2 * demote))
            worst = sorted(wanted, key=lambda c: sqnr.get(c.name, math.inf))[:demote]
            plan = [replace(c, reason=AUTO_REASON.format(sqnr=sqnr.get(c.name, math.nan), target=target_cosine))
                    if c in worst else c for c in plan]
        wanted = [c for c in plan if c.reason is None]
        sqnr = node_sqnr(float_path, folder / "int8.onnx", prepared, wanted, calibration[:4], folder) if wanted else {}
    restore_contract(qdq, prepared)
    return StaticOutcome(qdq, tuple(plan), sqnr, cosines, rounds, len(calibration))


def _quantize(float_path: Path, folder: Path, plan: Sequence[Candidate], calibration: Sequence[Feeds],
              method: str, per_channel: bool, reduce_range: bool) -> onnx.ModelProto:
    wanted = [c.name for c in plan if c.reason is None]
    # The calibrators print their progress on stdout, where `quantize --json` writes its report.
    with contextlib.redirect_stdout(io.StringIO()):
        _ort_quantize(float_path, folder, wanted, plan, _reader(calibration), method, per_channel, reduce_range)
    return onnx.load_model(folder / "int8.onnx")


def _ort_quantize(float_path: Path, folder: Path, wanted: list[str], plan: Sequence[Candidate], samples: Any,
                  method: str, per_channel: bool, reduce_range: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    ort_quantize_static(
        float_path, folder / "int8.onnx", samples,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(STATIC_OP_TYPES),
        nodes_to_quantize=wanted or None,
        nodes_to_exclude=[c.name for c in plan if c.reason is not None],
        per_channel=per_channel,
        reduce_range=reduce_range,  # 7-bit weights: see quantize.dynamic.quantize on AVX2 without VNNI
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method={"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
                          "entropy": CalibrationMethod.Entropy}[method],
        calibration_cache_path=folder / "calibration.json",  # rounds after the first reuse the ranges
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


def _reader(samples: Sequence[Feeds]) -> Any:
    """The samples as the ``CalibrationDataReader`` onnxruntime.quantization reads, once through."""
    from onnxruntime.quantization import CalibrationDataReader

    class Samples(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items = iter(samples)

        def get_next(self) -> Feeds | None:
            return next(self.items, None)

    return Samples()


def _run(path: Path, samples: Sequence[Feeds]) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(None, feeds))) for feeds in samples]


def _cosines(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per float output, the cosine over all samples (outputs whose shapes differ between models count 0)."""
    out: dict[str, float] = {}
    for name in reference[0]:
        if reference[0][name].dtype.kind != "f":
            continue
        pairs = [(r[name], c[name]) for r, c in zip(reference, candidate)]
        if any(a.shape != b.shape for a, b in pairs):
            out[name] = 0.0
            continue
        a = np.concatenate([p[0].ravel() for p in pairs]).astype(np.float64)
        b = np.concatenate([p[1].ravel() for p in pairs]).astype(np.float64)
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        out[name] = float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))
    return out


def node_sqnr(float_path: Path, qdq_path: Path, prepared: onnx.ModelProto, nodes: Sequence[Candidate],
              samples: Sequence[Feeds], folder: Path) -> dict[str, float]:
    """SQNR (dB) of the activation each node writes, before against after its Q/DQ pair (local noise)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    activations = {}
    for which, path in (("float", float_path), ("int8", qdq_path)):
        augmented = folder / f"{which}_debug.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented))
        activations[which] = collect_activations(str(augmented), _reader(samples))
        augmented.unlink()
    errors = compute_activation_error(create_activation_matching(activations["int8"], activations["float"]))
    outputs = {n.name: n.output[0] for n in prepared.graph.node}
    return {c.name: float(errors[outputs[c.name]]["qdq_err"]) for c in nodes if outputs.get(c.name) in errors}


def quantized_static_names(quantized: onnx.ModelProto, candidates: Sequence[Candidate]) -> set[str]:
    """Candidates whose weight now comes from a DequantizeLinear (Q/DQ keeps the node names)."""
    dequantized = {n.output[0] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    by_name = {n.name: n for n in quantized.graph.node}
    return {c.name for c in candidates if c.reason is None and c.name in by_name
            and len(by_name[c.name].input) > 1 and by_name[c.name].input[1] in dequantized}


def static_report(outcome: StaticOutcome, method: str, target: float | None) -> dict[str, Any]:
    """The report's ``static`` section: calibration, automatic choices, per-node SQNR, output cosines."""
    return {
        "calibration": {"method": method, "samples": outcome.samples},
        "target_cosine": target,
        "rounds": outcome.rounds,
        "kept_float_automatically": [c.name for c in outcome.candidates if c.reason and c.reason.startswith("kept float automatically")],
        "node_sqnr_db": dict(sorted(outcome.sqnr_db.items(), key=lambda kv: kv[1])),
        "output_cosine": outcome.output_cosine,
    }
