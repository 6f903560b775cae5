"""Shared helpers for the benchmark scripts (importing them does not load torch)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attn_deploy.artifact.fileio import write_bytes_atomic
from attn_deploy.bench.memory import peak_rss_mb, reset_peak_rss, rss_mb

__all__ = ["measure_call", "peak_rss_mb", "reset_peak_rss", "rss_mb", "write_json"]


def measure_call(call: Callable[[], object], repeats: int, warmup: int = 0) -> dict[str, Any]:
    """Median time of ``repeats`` calls after ``warmup`` untimed ones, and the memory they took.

    ``extra_mb`` is the process's peak RSS during the calls minus its RSS just before them (the
    warm-up included); ``process_peak_rss_mb`` is the whole process's peak. One case per process
    keeps both honest.
    """
    before = rss_mb()
    reset_peak_rss()
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    peak = peak_rss_mb()
    return {
        "median_s": statistics.median(times),
        "times_s": times,
        "warmup_runs": warmup,
        "rss_before_mb": before,
        "peak_rss_during_mb": peak,
        "extra_mb": peak - before,
        "process_peak_rss_mb": max(peak, before),
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(report, indent=2) + "\n").encode())


def run_cases(names: str, run: Callable[[str, Path], dict[str, Any]], prefix: str,
              shown: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row) -> list[dict[str, Any]]:
    """``run(name, scratch)`` for each comma-separated name, in one scratch folder removed after;
    each row is printed as JSON (``shown`` picks what) as it comes."""
    rows = []
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        for name in names.split(","):
            rows.append(run(name, Path(folder)))
            print(json.dumps(shown(rows[-1])), flush=True)
    return rows
