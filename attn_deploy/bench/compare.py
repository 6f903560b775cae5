"""Float vs int8 (vs float lowered) in ONNX Runtime: parity and latency from one run, for ``quantize``'s report.

Parity uses ``check``'s statistics (and detection matching for detector outputs); latency takes
turns between the models (``bench.timing.interleaved``) so load changes hit all of them alike.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from pathlib import Path
from typing import Any

import onnx

from attn_deploy.bench.timing import interleaved
from attn_deploy.check.detection import (
    DETECTION_OUTPUTS,
    DetectionSelection,
    DetectionThresholds,
    Roles,
    detection_roles,
    match_detections,
)
from attn_deploy.check.stats import compare_outputs
from attn_deploy.runtime import OrtRunner
from attn_deploy.runtime.base import Feeds


def TimingRunner(model_path: str | Path, threads: int | None = None) -> OrtRunner:
    """An ONNX Runtime CPU runner with the session defaults a deployment gets (idle threads spin)."""
    return OrtRunner(model_path, providers=["CPUExecutionProvider"], threads=threads)


def detection_parity(reference: Feeds, candidate: Feeds, iou: float = 0.5, roles: Roles | None = None,
                     selection: DetectionSelection | None = None) -> dict[str, Any]:
    """Detections matched by class and IoU (``attn_deploy.check.detection``), as the report's JSON fields;
    with the detector's ``selection``, borderline detections are left out of ``matched_fraction``."""
    result = match_detections(reference, candidate, DetectionThresholds(iou=iou), roles, selection)
    return {
        "outputs": dict(roles) if roles else {role: role for role in DETECTION_OUTPUTS},
        "iou_threshold": iou,
        "reference_detections": result.reference_count,
        "candidate_detections": result.candidate_count,
        "matched": result.matched,
        "matched_fraction": result.matched_fraction,
        "counted": result.counted,
        "borderline": result.borderline,
        "selection": selection.to_json() if selection else None,
        "mean_iou": result.mean_iou,
        "max_score_diff_matched": result.max_score_error,
    }


def measure(float_path: Path, int8_path: Path, feeds: Feeds, iterations: int, threads: int | None = None,
            float_lowered_path: Path | None = None, detection: Roles | None = None,
            selection: DetectionSelection | None = None) -> dict[str, Any]:
    """Parity (``check`` statistics) and latency of the int8 model against the float one.

    With ``float_lowered_path`` (the float model lowered for ONNX Runtime, when the int8 model is),
    its latency is measured in the same run too, so the report separates what quantization gains
    from what lowering gains. A detector's outputs (``detection``, as its manifest records them, else
    outputs named boxes, scores and labels) are matched as detections, borderline ones left out when
    the detector's ``selection`` is known.
    """
    float_runner, int8_runner = TimingRunner(float_path, threads), TimingRunner(int8_path, threads)
    reference, candidate = float_runner.infer(feeds), int8_runner.infer(feeds)
    result: dict[str, Any] = {}
    roles = detection_roles(list(reference), detection)
    if roles:
        result["detection"] = detection_parity(reference, candidate, roles=roles, selection=selection)
        others = {k: v for k, v in reference.items() if k not in roles.values()}
        result["parity"] = [s.to_dict() for s in compare_outputs(others, {k: candidate[k] for k in others})]
    else:
        result["parity"] = [s.to_dict() for s in compare_outputs(reference, candidate)]
    runners = [float_runner, int8_runner]
    if float_lowered_path is not None:
        runners.append(TimingRunner(float_lowered_path, threads))
    samples = interleaved([functools.partial(r.infer, feeds) for r in runners], iterations)
    float_ms, int8_ms = (statistics.median(s) * 1e3 for s in samples[:2])
    result["latency"] = {
        "backend": "onnxruntime CPUExecutionProvider",
        "iterations": iterations,
        "float_ms": float_ms,
        "int8_ms": int8_ms,
        "speedup": float_ms / int8_ms,
        "float_samples_ms": [s * 1e3 for s in samples[0]],
        "int8_samples_ms": [s * 1e3 for s in samples[1]],
    }
    if float_lowered_path is not None:
        lowered_ms = statistics.median(samples[2]) * 1e3
        result["latency"].update({
            "float_lowered_ms": lowered_ms,
            "speedup_vs_float_lowered": lowered_ms / int8_ms,
            "float_lowered_samples_ms": [s * 1e3 for s in samples[2]],
        })
    return result


def compare_int8(
    float_model: onnx.ModelProto,
    int8_model: onnx.ModelProto,
    feeds: Feeds | None,
    *,
    iterations: int,
    threads: int | None = None,
    float_lowered: onnx.ModelProto | None = None,
    detection: Roles | None = None,
    selection: DetectionSelection | None = None,
) -> dict[str, Any]:
    """The report's ``parity``, ``latency`` (and ``detection``) fields for the models in memory.

    Without ``feeds`` (a symbolic input dimension, or ``iterations`` 0) parity and latency are None,
    but the int8 model must still load in plain ONNX Runtime (``InputError`` if it does not).
    """
    with tempfile.TemporaryDirectory(prefix="attn_deploy_compare_") as tmp_dir:
        tmp = Path(tmp_dir)
        int8_path = tmp / "int8.onnx"
        onnx.save_model(int8_model, int8_path)
        if feeds is None:
            OrtRunner(int8_path, ["CPUExecutionProvider"]).close()
            return {"parity": None, "latency": None}
        float_path = tmp / "float.onnx"
        onnx.save_model(float_model, float_path)
        lowered_path = None
        if float_lowered is not None:
            lowered_path = tmp / "float-lowered.onnx"
            onnx.save_model(float_lowered, lowered_path)
        return measure(float_path, int8_path, feeds, iterations, threads, lowered_path, detection, selection)
