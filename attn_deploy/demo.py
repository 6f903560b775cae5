"""``attn-deploy demo``: export a zoo model, then check and bench it in PyTorch and ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attn_deploy.bench.run import BenchOptions, BenchReport, run_bench
from attn_deploy.check.gate import CheckOptions, CheckReport, run_check
from attn_deploy.export import ExportOptions, ExportResult, export_model
from attn_deploy.export.loading import load_model
from attn_deploy.runtime.workload import WorkloadOptions


@dataclass
class DemoResult:
    export: ExportResult
    check: CheckReport
    bench: BenchReport

    @property
    def passed(self) -> bool:
        return self.check.passed


def run_demo(model: str, out_dir: Path, iterations: int = 10, min_seconds: float = 1.0, progress: Callable[[str], None] = lambda _: None) -> DemoResult:
    progress(f"exporting {model}")
    name = model.split(":", 1)[-1]
    exported = export_model(load_model(model), out_dir / f"{name}.onnx", ExportOptions())
    artifacts = [str(exported.onnx_path)]
    workload = WorkloadOptions(backends=("torch", "ort", "trt"))
    check = run_check(model, artifacts, CheckOptions(workload=workload, seed=1), progress)
    bench = run_bench(model, artifacts, BenchOptions(workload=workload, iterations=iterations, min_seconds=min_seconds, warmup=2), progress)
    return DemoResult(exported, check, bench)
