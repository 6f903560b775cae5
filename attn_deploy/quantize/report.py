"""The quantize report: sizes, what was quantized or skipped and why, parity and latency from one run."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from attn_deploy.check.detection import DETECTION_OUTPUTS, DetectionThresholds, match_detections
from attn_deploy.check.stats import compare_outputs
from attn_deploy.quantize.dynamic import Candidate
from attn_deploy.runtime import OrtRunner
from attn_deploy.runtime.base import Feeds

def detection_parity(reference: Feeds, candidate: Feeds, iou: float = 0.5) -> dict[str, Any]:
    """Detections matched by class and IoU (``attn_deploy.check.detection``), as the report's JSON fields."""
    result = match_detections(reference, candidate, DetectionThresholds(iou=iou))
    return {
        "iou_threshold": iou,
        "reference_detections": result.reference_count,
        "candidate_detections": result.candidate_count,
        "matched": result.matched,
        "matched_fraction": result.matched_fraction,
        "mean_iou": result.mean_iou,
        "max_score_diff_matched": result.max_score_error,
    }


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def TimingRunner(model_path: str | Path, threads: int | None = None) -> OrtRunner:  # noqa: N802 - reads as a runner type
    """An ONNX Runtime runner whose idle threads do not spin, for timing two sessions in turn."""
    return OrtRunner(model_path, providers=["CPUExecutionProvider"], threads=threads, spinning=False)


def interleaved_latency(runners: Sequence[OrtRunner], feeds: Feeds, iterations: int, warmup: int = 1) -> list[list[float]]:
    """Seconds per run for each runner, alternating runners so load changes hit all of them alike."""
    for runner in runners:
        for _ in range(warmup):
            runner.infer(feeds)
    samples: list[list[float]] = [[] for _ in runners]
    for _ in range(iterations):
        for runner, out in zip(runners, samples):
            start = time.perf_counter()
            runner.infer(feeds)
            out.append(time.perf_counter() - start)
    return samples


def node_report(candidates: Sequence[Candidate], quantized: set[str]) -> dict[str, Any]:
    asked = [c for c in candidates if c.reason is None]
    return {
        "quantized": sorted(c.name for c in asked if c.name in quantized),
        "skipped": [
            {"name": c.name, "op_type": c.op_type, "why": c.reason or "quantize_dynamic left it float"}
            for c in candidates
            if c.name not in quantized
        ],
    }


def measure(float_path: Path, int8_path: Path, feeds: Feeds, iterations: int, threads: int | None = None) -> dict[str, Any]:
    """Parity (``check`` statistics) and latency of the int8 model against the float one."""
    float_runner, int8_runner = TimingRunner(float_path, threads), TimingRunner(int8_path, threads)
    reference, candidate = float_runner.infer(feeds), int8_runner.infer(feeds)
    result: dict[str, Any] = {}
    if all(k in reference for k in DETECTION_OUTPUTS):
        result["detection"] = detection_parity(reference, candidate)
        others = {k: v for k, v in reference.items() if k not in DETECTION_OUTPUTS}
        result["parity"] = [s.to_dict() for s in compare_outputs(others, {k: candidate[k] for k in others})]
    else:
        result["parity"] = [s.to_dict() for s in compare_outputs(reference, candidate)]
    float_s, int8_s = interleaved_latency([float_runner, int8_runner], feeds, iterations)
    float_ms, int8_ms = statistics.median(float_s) * 1e3, statistics.median(int8_s) * 1e3
    result["latency"] = {
        "backend": "onnxruntime CPUExecutionProvider",
        "iterations": iterations,
        "float_ms": float_ms,
        "int8_ms": int8_ms,
        "speedup": float_ms / int8_ms,
        "float_samples_ms": [s * 1e3 for s in float_s],
        "int8_samples_ms": [s * 1e3 for s in int8_s],
    }
    return result
