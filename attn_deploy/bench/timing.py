"""Latency measurement: warm-up, then at least N runs and at least T seconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
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


#: Pause before each turn of ``interleaved``, so the previous session's worker threads stop spinning and park.
PARK_SECONDS = 0.1
#: Timed runs per turn of ``interleaved``: as many as fit in this many seconds (1 to 10).
TURN_SECONDS = 0.05


def interleaved(calls: Sequence[Callable[[], object]], iterations: int) -> list[list[float]]:
    """Seconds per call for each of ``calls``: ``iterations`` timed calls each, taken in turns.

    Turns share load changes between the models being compared. ONNX Runtime's idle worker
    threads spin for tens of milliseconds after a run; a session timed while another's threads
    still spin ran 2.6x slower (a 2.7 ms model on 2 cores). So each turn starts after a pause and
    one untimed call, and within a turn a session's own spinning helps it, as in a deployment. A
    turn is one timed call for models slower than ``TURN_SECONDS``, up to 10 for fast ones.
    """
    samples: list[list[float]] = [[] for _ in calls]
    while min(len(s) for s in samples) < iterations:
        for call, out in zip(calls, samples):
            if len(out) >= iterations:
                continue
            time.sleep(PARK_SECONDS)
            start = time.perf_counter()
            call()
            block = max(1, min(10, int(TURN_SECONDS / max(time.perf_counter() - start, 1e-9))))
            for _ in range(min(block, iterations - len(out))):
                start = time.perf_counter()
                call()
                out.append(time.perf_counter() - start)
    return samples
