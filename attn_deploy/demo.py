"""``attn-deploy demo``: export a zoo model, then check and bench it in PyTorch and ONNX Runtime.

The PyTorch model is loaded once and exported once; check and bench share one workload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attn_deploy.bench.run import BenchOptions, BenchReport, bench_workload
from attn_deploy.check.gate import CheckOptions, CheckReport, check_workload
from attn_deploy.export import ExportOptions, ExportResult, export_model
from attn_deploy.export.loading import load_model
from attn_deploy.runtime.workload import WorkloadOptions, prepare_workload


@dataclass
class DemoResult:
    export: ExportResult
    check: CheckReport
    bench: BenchReport

    @property
    def passed(self) -> bool:
        return self.check.passed


def run_demo(model: str, out_dir: Path, iterations: int = 10, min_seconds: float = 1.0, progress: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Export ``model`` into ``out_dir``, then check and bench PyTorch against the exported model."""
    progress(f"loading {model}")
    loaded = load_model(model)
    progress(f"exporting {model}")
    name = model.split(":", 1)[-1]
    exported = export_model(loaded, out_dir / f"{name}.onnx", ExportOptions())
    options = WorkloadOptions(backends=("torch", "ort", "trt"))
    work = prepare_workload(loaded, [exported.artifact], options, progress)
    check = check_workload(work, CheckOptions(workload=options, seed=1), progress)
    bench = bench_workload(work, BenchOptions(workload=options, iterations=iterations, min_seconds=min_seconds, warmup=2), progress)
    return DemoResult(exported, check, bench)
