"""``bench``: latency and memory of SOURCE and every ARTIFACT on the same inputs, one backend at a time.

Memory is the process's peak RSS while a backend runs (reset before each one where Linux allows)
and its extra over the RSS just before; models loaded earlier stay resident, so for the most honest
peaks run one backend per process (``--backends ort``). On a GPU, runners return host arrays, which
synchronises each timed call with the device.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field

from attn_deploy.bench.memory import peak_rss_mb, reset_peak_rss, rss_mb
from attn_deploy.bench.timing import LatencyStats, latency_stats, measure
from attn_deploy.artifact.manifest import library_versions
from attn_deploy.runtime.backends import Skipped
from attn_deploy.runtime.inputs import InputSpec, random_feeds
from attn_deploy.runtime.workload import WorkloadOptions, prepare_workload

Tick = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchOptions:
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    warmup: int = 3
    iterations: int = 20
    min_seconds: float = 2.0
    batches: tuple[int, ...] = (1,)
    seed: int = 0


@dataclass(frozen=True)
class BackendResult:
    label: str
    backend: str
    batch: int
    samples_s: list[float]
    latency: LatencyStats
    rss_before_mb: float
    peak_rss_mb: float
    device_peak_mb: float | None

    @property
    def extra_rss_mb(self) -> float:
        return self.peak_rss_mb - self.rss_before_mb


@dataclass
class BenchReport:
    source: str
    results: list[BackendResult]
    skipped: list[Skipped]
    settings: dict[str, object]
    machine: dict[str, object] = field(default_factory=lambda: machine_info())
    versions: dict[str, str] = field(default_factory=library_versions)


def machine_info() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, object] = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def _with_batch(specs: list[InputSpec], batch: int) -> list[InputSpec]:
    return [InputSpec(s.name, (batch, *s.shape[1:]), s.dtype) for s in specs]


def _batch_skip_reason(backend: str, artifact: str, batch: int, is_detector: bool) -> str | None:
    if batch == 1:
        return None
    if is_detector:
        return f"batch {batch}: the detector takes one image per call"
    if backend in ("ort", "trt"):
        import onnx

        if artifact.endswith(".onnx"):
            graph = onnx.load(artifact, load_external_data=False).graph
            initializers = {i.name for i in graph.initializer}
            for vi in graph.input:
                dims = vi.type.tensor_type.shape.dim
                if vi.name not in initializers and dims and dims[0].HasField("dim_value") and dims[0].dim_value != batch:
                    return f"batch {batch}: {vi.name} has a static batch of {dims[0].dim_value} (export with --dynamic 0)"
    return None


def run_bench(source: str, artifacts: list[str], options: BenchOptions = BenchOptions(), progress: Callable[[str], None] = lambda _: None, tick: Tick = lambda *_: None) -> BenchReport:
    """Time every runnable backend at every batch size; ``tick(label, done, total)`` after each timed call."""
    work = prepare_workload(source, artifacts, options.workload, progress)
    skipped = list(work.skipped)
    results: list[BackendResult] = []
    for planned in work.planned:
        progress(f"loading {planned.label}")
        runner = planned.make()
        try:
            for batch in options.batches:
                reason = _batch_skip_reason(planned.backend, planned.artifact, batch, work.is_detector)
                if reason:
                    skipped.append(Skipped(planned.label, reason))
                    continue
                feeds = random_feeds(_with_batch(work.specs, batch), options.seed, None, work.preprocess)
                done = 0

                def on_tick(label: str = planned.label) -> None:
                    nonlocal done
                    done += 1
                    tick(f"{label} b{batch}", done, options.iterations)

                device_peak = _reset_device_peak()
                before = rss_mb()
                reset_peak_rss()
                samples = measure(lambda: runner.infer(feeds), warmup=options.warmup, iterations=options.iterations,
                                  min_seconds=options.min_seconds, tick=on_tick)
                results.append(BackendResult(planned.label, planned.backend, batch, samples, latency_stats(samples, batch),
                                             before, max(peak_rss_mb(), before), _device_peak() if device_peak else None))
        finally:
            close = getattr(runner, "close", None)
            if close is not None:
                close()
    return BenchReport(
        source=source,
        results=results,
        skipped=skipped,
        settings={
            "backends": list(options.workload.backends),
            "warmup": options.warmup,
            "iterations": options.iterations,
            "min_seconds": options.min_seconds,
            "batches": list(options.batches),
            "seed": options.seed,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype.name} for s in work.specs],
        },
    )


def _reset_device_peak() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    if not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def _device_peak() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20
