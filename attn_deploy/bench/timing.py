"""Latency measurement: warm-up, then at least N runs and at least T seconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

#: Coefficient of variation above which a measurement is flagged as noisy.
CV_WARN = 0.025


@dataclass(frozen=True)
class LatencyStats:
    """Seconds per call; ``throughput`` in items (batch elements) per second."""

    iterations: int
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    std: float
    cv: float
    throughput: float

    @property
    def noisy(self) -> bool:
        return self.cv > CV_WARN

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def latency_stats(samples: list[float], batch: int) -> LatencyStats:
    arr = np.asarray(samples, dtype=np.float64)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(arr, [50, 90, 95, 99]))
    return LatencyStats(len(samples), p50, p90, p95, p99, mean, std, std / mean if mean > 0 else 0.0, batch / statistics.median(samples))


def measure(
    call: Callable[[], object],
    *,
    warmup: int,
    iterations: int,
    min_seconds: float,
    max_iterations: int = 100_000,
    tick: Callable[[], None] = lambda: None,
) -> list[float]:
    """Run ``call`` ``warmup`` times untimed, then until both ``iterations`` and ``min_seconds`` are reached."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_iterations and (len(samples) < iterations or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
        tick()
    return samples
