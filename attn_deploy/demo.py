"""``attn-deploy demo``: export a zoo model, run it in PyTorch and ONNX Runtime, compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attn_deploy.check.stats import ErrorStats, compare_outputs
from attn_deploy.export import ExportOptions, ExportResult, export_model
from attn_deploy.export.loading import load_model
from attn_deploy.runtime import OrtRunner, TorchRunner, time_runner
from attn_deploy.runtime.base import median_ms

#: fp32 parity bound used by the demo and the export tests: max abs error <= 1e-4 * max |output|.
FP32_REL_TO_MAX = 1e-4


@dataclass
class DemoResult:
    export: ExportResult
    stats: list[ErrorStats]
    torch_ms: float
    ort_ms: float

    @property
    def passed(self) -> bool:
        return all(s.shapes_match and s.nonfinite == 0 and s.rel_to_max <= FP32_REL_TO_MAX for s in self.stats)


def run_demo(model: str, out_dir: Path, iterations: int = 5) -> DemoResult:
    loaded = load_model(model)
    name = model.split(":", 1)[-1]
    result = export_model(loaded, out_dir / f"{name}.onnx", ExportOptions())
    ort_runner = OrtRunner(result.onnx_path)
    torch_runner = TorchRunner(loaded.module, ort_runner.input_names, ort_runner.output_names)
    inputs = loaded.example_inputs(loaded.input_shapes, seed=1)
    feeds = {n: t.numpy() for n, t in zip(ort_runner.input_names, inputs)}
    stats = compare_outputs(torch_runner.infer(feeds), ort_runner.infer(feeds))
    torch_ms = median_ms(time_runner(torch_runner, feeds, iterations=iterations))
    ort_ms = median_ms(time_runner(ort_runner, feeds, iterations=iterations))
    return DemoResult(result, stats, torch_ms, ort_ms)
