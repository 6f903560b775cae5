"""``bench``: latency and memory of SOURCE and every ARTIFACT on the same inputs, one backend at a time.

Memory is the process's peak RSS while a backend runs (reset before each one where Linux allows)
and its extra over the RSS just before; models loaded earlier stay resident, so for the most honest
peaks run one backend per process (``--backends ort``). On a GPU, runners return host arrays, which
synchronises each timed call with the device.

``device_peak_mb`` is ``torch.cuda.max_memory_allocated`` during the torch backend's runs, on a CUDA
device; it cannot see ONNX Runtime's or TensorRT's device allocations, so it is None for those
backends (and everywhere without CUDA).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_deploy import defaults
from attn_deploy.artifact.fileio import sha256_file
from attn_deploy.artifact.manifest import library_versions
from attn_deploy.bench.memory import peak_rss_mb, reset_peak_rss, rss_mb
from attn_deploy.bench.timing import LatencyStats, latency_stats, measure
from attn_deploy.errors import InputError
from attn_deploy.runtime.backends import Planned, Skipped
from attn_deploy.runtime.base import Feeds, Runner
from attn_deploy.runtime.inputs import InputSpec, load_samples, random_feeds
from attn_deploy.runtime.workload import (
    Candidate,
    Reference,
    Workload,
    WorkloadOptions,
    prepare_workload,
)

Tick = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BackendResult:
    """One (backend, batch) measurement; ``device_peak_mb`` is PyTorch's CUDA peak, torch backend only (else None)."""

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


@dataclass(frozen=True)
class BenchOptions:
    """What ``bench`` runs (``workload``) and how: warm-up, at least ``iterations`` runs and ``min_seconds``, per batch size."""

    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    warmup: int = defaults.BENCH_WARMUP
    iterations: int = defaults.BENCH_ITERATIONS
    min_seconds: float = defaults.BENCH_MIN_SECONDS
    batches: tuple[int, ...] = defaults.BENCH_BATCHES
    seed: int = defaults.SEED
    #: Inputs as ``check`` makes them (``runtime/inputs.py``): random float range, real data, token-id bound.
    val_range: tuple[float, float] | None = None
    data: Path | None = None
    allow_nonfinite: bool = False
    vocab: int | None = None


@dataclass
class BenchReport:
    source: str
    results: list[BackendResult]
    skipped: list[Skipped]
    settings: dict[str, object]
    machine: dict[str, object] = field(default_factory=lambda: machine_info())
    #: Warnings (a run near this machine's memory).
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)
    #: The files measured, by label: ``{"path", "sha256"}`` (``package --bench-report`` matches them by checksum).
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)


def machine_info() -> dict[str, object]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
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
    return [dataclasses.replace(s, shape=(batch, *s.shape[1:])) for s in specs]


def _batch_feeds(work: Workload, options: BenchOptions, data: Feeds | None, batch: int) -> Feeds:
    """Random inputs at ``batch``, or the ``--data`` sample (one image or .npz) repeated to it."""
    if data is None:
        return random_feeds(_with_batch(work.specs, batch), options.seed, options.val_range, work.preprocess, options.vocab)
    feeds = {}
    for name, array in data.items():
        if array.shape[:1] != (batch,) and array.shape[:1] != (1,):
            raise InputError(f"--data {options.data}: {name!r} holds batch {array.shape[0]}; give batch 1 (repeated to --batch {batch}) or {batch}")
        feeds[name] = array if array.shape[0] == batch else np.repeat(array, batch, axis=0)
    return feeds


def _batch_skip_reason(planned: Planned, batch: int, is_detector: bool) -> str | None:
    if batch == 1:
        return None
    if is_detector:
        return f"batch {batch}: the detector takes one image per call"
    return planned.backend.batch_limit(planned.target, batch)


def run_bench(
    source: Reference,
    artifacts: Sequence[Candidate] = (),
    options: BenchOptions = BenchOptions(),
    progress: Callable[[str], None] = lambda _: None,
    tick: Tick = lambda *_: None,
) -> BenchReport:
    """Time every runnable backend at every batch size; ``tick(label, done, total)`` after each timed call."""
    return bench_workload(prepare_workload(source, artifacts, options.workload, progress), options, progress, tick)


def bench_workload(
    work: Workload, options: BenchOptions = BenchOptions(), progress: Callable[[str], None] = lambda _: None, tick: Tick = lambda *_: None
) -> BenchReport:
    """``run_bench`` on a prepared workload (``demo`` checks and benches one workload)."""
    skipped = list(work.skipped)
    results: list[BackendResult] = []
    data = None
    if options.data is not None:
        data = load_samples(options.data, work.specs, preprocess=work.preprocess, allow_nonfinite=options.allow_nonfinite)[0]
    for planned in work.planned:
        progress(f"loading {planned.label}")
        with work.make_runner(planned) as runner:
            for batch in options.batches:
                reason = _batch_skip_reason(planned, batch, work.is_detector)
                if reason:
                    skipped.append(Skipped(planned.label, reason))
                    continue
                feeds = _batch_feeds(work, options, data, batch)
                done = 0

                def on_tick(label: str = planned.label, batch: int = batch) -> None:
                    nonlocal done
                    done += 1
                    tick(f"{label} b{batch}", done, options.iterations)

                def call(runner: Runner = runner, feeds: Feeds = feeds) -> object:
                    return runner.infer(feeds)

                device = planned.backend.torch_allocates and _reset_device_peak()
                before = rss_mb()
                reset_peak_rss()
                samples = measure(call, warmup=options.warmup, iterations=options.iterations, min_seconds=options.min_seconds, tick=on_tick)
                results.append(BackendResult(planned.label, planned.backend.name, batch, samples, latency_stats(samples, batch),
                                             before, max(peak_rss_mb(), before), _device_peak() if device else None))
    return BenchReport(
        source=work.source,
        results=results,
        skipped=skipped,
        notes=list(work.notes),
        artifacts=_artifact_files(work),
        settings={
            "backends": list(work.options.backends),
            "warmup": options.warmup,
            "iterations": options.iterations,
            "min_seconds": options.min_seconds,
            "batches": list(options.batches),
            "seed": options.seed,
            "val_range": list(options.val_range) if options.val_range else None,
            "data": str(options.data) if options.data else None,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype.name} for s in work.specs],
        },
    )


def _artifact_files(work: Workload) -> dict[str, dict[str, str]]:
    """The model files the planned runners load (ONNX models, engines), with their checksums."""
    files = {}
    for planned in work.planned:
        target = planned.target
        path = target.engine or (target.artifact.path if target.artifact is not None else None)
        if path is not None and Path(path).is_file():
            files[planned.label] = {"path": str(path), "sha256": sha256_file(path)}
    return files


def _reset_device_peak() -> bool:
    """Start PyTorch's CUDA peak counter afresh; False when there is no CUDA device (or no torch)."""
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

    return float(torch.cuda.max_memory_allocated()) / 2**20
