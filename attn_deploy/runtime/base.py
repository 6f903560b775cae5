"""The runner interface and a simple latency measurement."""

from __future__ import annotations

import statistics
import time
from typing import Protocol

import numpy as np

Feeds = dict[str, np.ndarray]


class Runner(Protocol):
    """A backend ready to run: ``infer`` maps input names to arrays and returns outputs by name."""

    name: str

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def infer(self, feeds: Feeds) -> Feeds: ...


def time_runner(runner: Runner, feeds: Feeds, *, warmup: int = 1, iterations: int = 5) -> list[float]:
    """Seconds per ``infer`` call over ``iterations`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        runner.infer(feeds)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        runner.infer(feeds)
        samples.append(time.perf_counter() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3
