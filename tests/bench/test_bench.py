"""bench: statistics, batch sweeps, skips with reasons, and every output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attn_deploy.bench import timing
from attn_deploy.bench.timing import interleaved, latency_stats, measure
from tests.conftest import RunCli, relu_model


def test_latency_stats_order_and_cv() -> None:
    samples = [0.010, 0.011, 0.012, 0.013, 0.050]
    s = latency_stats(samples, batch=4)
    assert s.p50 <= s.p90 <= s.p95 <= s.p99 <= max(samples)
    assert s.p50 == pytest.approx(0.012) and s.throughput == pytest.approx(4 / 0.012)
    assert s.noisy and s.cv == pytest.approx(s.std / s.mean)
    assert not latency_stats([0.01] * 5, batch=1).noisy


def test_measure_honours_iterations_and_seconds() -> None:
    calls: list[int] = []
    samples = measure(lambda: calls.append(1), warmup=2, iterations=5, min_seconds=0.0)
    assert len(samples) == 5 and len(calls) == 7
    assert len(measure(lambda: None, warmup=0, iterations=1, min_seconds=0.05)) > 1


def test_interleaved_takes_turns_and_times_each_call_the_same_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "PARK_SECONDS", 0.0)
    order: list[str] = []
    samples = interleaved([lambda: order.append("a"), lambda: order.append("b")], iterations=25)
    assert [len(s) for s in samples] == [25, 25]
    # Fast calls get turns of 10 timed calls after one untimed: a x11, b x11, a x11, ...
    assert order[:22] == ["a"] * 11 + ["b"] * 11
    assert order.count("a") == order.count("b") == 25 + 3  # three turns each, one untimed call per turn


def test_bench_cli_outputs(run_cli: RunCli, tmp_path: Path) -> None:
    onnx_path = tmp_path / "m.onnx"
    assert run_cli("export", "zoo:cross-region-256", "--input-shape", "1x256x16x16", "--dynamic", "0", "-o", str(onnx_path)).exit_code == 0
    files = {k: tmp_path / f"bench.{k}" for k in ("json", "md", "png")}
    result = run_cli(
        "bench", "zoo:cross-region-256", str(onnx_path), "--batch", "1,2", "--iterations", "3", "--min-seconds", "0", "--warmup", "1",
        "--input-shape", "1x256x16x16", "--report", str(files["json"]), "--markdown", str(files["md"]), "--plot", str(files["png"]),
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(files["json"].read_text())
    runs = {(r["kind"], r["batch"]) for r in report["results"]}
    assert runs == {("torch", 1), ("torch", 2), ("ort", 1), ("ort", 2)}
    for r in report["results"]:
        assert len(r["samples_s"]) == r["latency_s"]["iterations"] >= 3
        assert {"p50", "p90", "p95", "p99", "mean", "std", "cv", "throughput"} <= set(r["latency_s"])
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
    assert {"cpu", "cpu_count"} <= set(report["machine"]) and "onnxruntime" in report["versions"]
    assert [s["backend"] for s in report["skipped"]] == ["trt"]
    assert "| batch |" in files["md"].read_text()
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_static_batch_is_skipped_with_a_reason(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("bench", "zoo:sagan-256", "--backends", "ort", "--batch", "1,2", "--iterations", "2",
                                 "--min-seconds", "0", "--input-shape", "1x256x8x8", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["batch"] for r in report["results"]] == [1]
    assert any("static batch of 1" in s["reason"] for s in report["skipped"])


def test_bench_lower_times_the_lowered_model(run_cli: RunCli) -> None:
    result = run_cli("bench", "zoo:sagan-256", "--backends", "ort", "--lower", "--iterations", "2",
                                 "--min-seconds", "0", "--input-shape", "1x256x8x8", "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["backend"].endswith(".ort.onnx") for r in json.loads(result.stdout)["results"]] == [True]


def test_bench_inputs_from_data_and_val_range(run_cli: RunCli, tmp_path: Path) -> None:
    import numpy as np

    from attn_deploy.bench.run import BenchOptions, _batch_feeds
    from attn_deploy.runtime.inputs import InputSpec

    model = relu_model(tmp_path / "relu.onnx")
    data = tmp_path / "x.npz"
    np.savez(data, x=np.arange(4, dtype=np.float32).reshape(1, 4))
    args = ("bench", str(model), "--backends", "ort", "--input", "x:1x4", "--iterations", "1", "--min-seconds", "0", "--warmup", "0")
    code, stdout, stderr = run_cli(*args, "--batch", "1,2", "--data", str(data), "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert [r["batch"] for r in report["results"]] == [1, 2] and report["settings"]["data"] == str(data)
    run_cli(*args, "--val-range", "1,0").assert_error("--val-range '1,0'")

    work = type("W", (), {"specs": [InputSpec("x", (1, 4), np.dtype(np.float32))], "preprocess": None})()
    repeated = _batch_feeds(work, BenchOptions(data=data), {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}, 3)  # type: ignore[arg-type]
    assert repeated["x"].shape == (3, 4) and (repeated["x"][2] == [0, 1, 2, 3]).all()
    ranged = _batch_feeds(work, BenchOptions(val_range=(5.0, 6.0)), None, 2)  # type: ignore[arg-type]
    assert ranged["x"].shape == (2, 4) and ranged["x"].min() >= 5.0
