"""``package --bench-report``: the batch sizes ``bench --batch ... --json`` measured fastest become the dynamic
batcher's preferred sizes; a report of another file is refused (one line, exit 2, nothing written)."""

from __future__ import annotations

import json

import pytest

from tests.package.conftest import INPUT_SHAPE
from tests.package.test_repository import parse

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (the serve extra)")


@pytest.fixture(scope="module")
def bench_report(sagan_onnx, tmp_path_factory):
    """A real ``bench --batch 1,2 --report`` of the dynamic-batch SAGAN export (a few runs: only its format matters here)."""
    from typer.testing import CliRunner

    from attn_deploy.cli import app

    report = tmp_path_factory.mktemp("bench") / "bench.json"
    result = CliRunner().invoke(app, ["bench", "zoo:sagan-256", str(sagan_onnx), "--backends", "ort", "--batch", "1,2", "--input-shape", INPUT_SHAPE,
                                      "--iterations", "1", "--min-seconds", "0", "--warmup", "0", "--report", str(report)])
    assert result.exit_code == 0, result.output
    return report


def with_throughputs(report, path, rates):
    """The report with its ort results' throughput set per batch (measured ones are noise on a busy machine)."""
    data = json.loads(report.read_text())
    ort = [r for r in data["results"] if r["backend"].startswith("ort:")]
    data["results"] = [{**ort[0], "batch": b, "latency_s": {**ort[0]["latency_s"], "throughput": t}} for b, t in rates.items()]
    path.write_text(json.dumps(data))
    return path


def test_report_records_the_files_it_measured(bench_report, sagan_onnx):
    from attn_deploy.artifact.fileio import sha256_file

    data = json.loads(bench_report.read_text())
    (label,) = [r for r in data["artifacts"] if r.startswith("ort:")]
    assert data["artifacts"][label] == {"path": str(sagan_onnx), "sha256": sha256_file(sagan_onnx)}
    assert {r["batch"] for r in data["results"] if r["backend"] == label} == {1, 2}


def test_preferred_batch_sizes(run_cli, bench_report, sagan_onnx, tmp_path):
    report = with_throughputs(bench_report, tmp_path / "b.json", {1: 400.0, 2: 610.0, 4: 830.0, 8: 870.0, 16: 700.0})
    repo = tmp_path / "repo"
    code, out, err = run_cli("package", sagan_onnx, "--triton", repo, "--python-backend", "--bench-report", report)
    assert code == 0, err
    code, listed, err = run_cli("package", sagan_onnx, "--triton", tmp_path / "json", "--python-backend", "--bench-report", report, "--json")
    assert code == 0, err
    assert [m["preferred_batch_sizes"] for m in json.loads(listed)["models"]] == [[4, 8], [4, 8]]
    assert json.loads(listed)["notes"][0].startswith("preferred batch sizes 4, 8 from b.json")
    for name in ("sagan", "sagan-python"):
        config = parse(repo / name / "config.pbtxt")
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8] and config.max_batch_size == 8
    text = " ".join(out.split())
    assert "preferred batch sizes 4, 8 from b.json: throughput within 10% of the best (b1 400.0/s, b2 610.0/s, b4 830.0/s, b8 870.0/s, b16 700.0/s)" in text

    report = with_throughputs(bench_report, tmp_path / "c.json", {1: 400.0, 16: 900.0})
    assert run_cli("package", sagan_onnx, "--triton", tmp_path / "r16", "--bench-report", report).exit_code == 0
    config = parse(tmp_path / "r16" / "sagan" / "config.pbtxt")
    assert list(config.dynamic_batching.preferred_batch_size) == [16] and config.max_batch_size == 16  # raised to fit
    run_cli("package", sagan_onnx, "--triton", tmp_path / "r4", "--bench-report", report, "--max-batch-size", "4").assert_error(
        "--max-batch-size 4 is below the preferred batch size 16")


def test_report_of_another_model_is_refused(run_cli, bench_report, sagan_static_onnx, tmp_path):
    run_cli("package", sagan_static_onnx, "--triton", tmp_path / "repo", "--bench-report", bench_report).assert_error(
        "measured sagan.onnx, not static.onnx (sha256 differs)")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    run_cli("package", sagan_static_onnx, "--triton", tmp_path / "repo", "--bench-report", tmp_path / "other.json").assert_error(
        "is not a report of attn-deploy bench (--report, --json)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]
