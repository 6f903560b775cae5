"""build-trt with TensorRT-RTX on this CPU-only machine: real engines, reports, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.io import load_artifact
from attn_deploy.runtime.gpu import gpu_available
from tests.attention_graphs import encoder_block
from tests.conftest import RunCli

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed (pip install tensorrt-rtx-cu13; `make test` does)")


def _save(model: onnx.ModelProto, path: Path, manifest: dict | None = None) -> Path:
    if manifest is None:
        onnx.save(model, path)
    else:  # a real manifest, with ``manifest``'s fields
        Artifact.describe(model, source="test", exporter="test", **manifest).save(path)
    return path


def _build(run_cli: RunCli, tmp_path: Path, model: onnx.ModelProto, *args: str, manifest: dict | None = None) -> dict:
    src = _save(model, tmp_path / "m.onnx", manifest)
    engine = tmp_path / "m.engine"
    code, _, stderr = run_cli("build-trt", str(src), "-o", str(engine), "--runtime", "tensorrt-rtx", *args)
    assert code == 0, stderr
    assert engine.stat().st_size > 10_000
    report = json.loads((tmp_path / "m.engine.json").read_text())
    assert report["engine_bytes"] == engine.stat().st_size
    return report


def _assert_input_error(run_cli: RunCli, tmp_path: Path, args: list[str], match: str, code: int = 2) -> None:
    got, _, stderr = run_cli("build-trt", *args, "-o", str(tmp_path / "bad.engine"))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert got == code, stderr
    assert lines[0].startswith("error:") and match in " ".join(lines), stderr
    assert not list(tmp_path.glob("bad.engine*")) and not list(tmp_path.glob(".bad.engine*"))


def test_fp32_sagan_like_builds_through_the_body(run_cli: RunCli, tmp_path: Path) -> None:
    report = _build(run_cli, tmp_path, encoder_block(8, 16))
    assert report["runtime"] == "tensorrt-rtx" and report["versions"]["tensorrt-rtx"]
    assert report["precision"] == "float32" and report["fp16_conversion"] is None
    (node,) = report["fused_attention"]
    assert (node["node"], node["choice"], node["dk"], node["dv"]) == ("attn0", "body", 8, 16)
    layers = report["network_layers"]["summary"]
    assert layers["by_type"]["SOFTMAX"] == 2 and "ATTENTION_INPUT" not in layers["by_type"]
    assert report["profiles"] == [[{"name": "x", "min": [1, 16, 16], "opt": [1, 16, 16], "max": [1, 16, 16]}]]
    if not gpu_available()[0]:
        assert report["engine_layers"] is None and "needs an NVIDIA GPU" in report["engine_layers_note"]


def test_fp16_dk_equals_dv_builds_through_native_attention(run_cli: RunCli, tmp_path: Path) -> None:
    report = _build(run_cli, tmp_path, encoder_block(8, 8), "--fp16", "--compute-capability", "8.6", "--compute-capability", "12.0")
    assert report["precision"] == "float16" and report["compute_capabilities"] == ["8.6", "12.0"]
    assert [n["choice"] for n in report["fused_attention"]] == ["native-attention"]
    layers = report["network_layers"]["summary"]
    assert layers["by_type"]["ATTENTION_INPUT"] == 1 and layers["output_dtypes"]["HALF"] > 0
    assert report["fp16_conversion"]["fp32_ops"]["Softmax"] == 1


def test_fp16_dk_not_dv_keeps_the_body(run_cli: RunCli, tmp_path: Path) -> None:
    report = _build(run_cli, tmp_path, encoder_block(4, 16), "--fp16", "--save-onnx", str(tmp_path / "lowered.onnx"))
    assert [n["choice"] for n in report["fused_attention"]] == ["body"]
    lowered = onnx.load(tmp_path / "lowered.onnx")
    assert "Loop" not in {n.op_type for f in lowered.functions for n in f.node}
    assert report["precision"] == "float16"
    manifest = load_artifact(tmp_path / "lowered.onnx").manifest  # --fp16 travels in the manifest
    assert manifest.precision == "fp16" and manifest.stages[-2:] == ["fp16", "lower:tensorrt"]


def test_dynamic_batch_profile_defaults_from_the_manifest(run_cli: RunCli, tmp_path: Path) -> None:
    manifest = {"export_input_shapes": [[4, 16, 16]]}
    report = _build(run_cli, tmp_path, encoder_block(batch="B"), manifest=manifest)
    assert report["profiles"] == [[{"name": "x", "min": [1, 16, 16], "opt": [4, 16, 16], "max": [8, 16, 16]}]]


def test_explicit_profile_and_timing_cache(run_cli: RunCli, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    report = _build(run_cli,
        tmp_path, encoder_block(batch="B"),
        "--min-shapes", "x:1x16x16", "--opt-shapes", "x:2x16x16", "--max-shapes", "x:3x16x16",
        "--timing-cache", str(cache), "--workspace", "256",
    )
    assert report["profiles"][0][0]["max"] == [3, 16, 16]
    assert report["options"]["workspace_mib"] == 256
    # TensorRT-RTX made timing caches no-ops (1.2+): recorded, not written.
    assert "no-ops in TensorRT-RTX" in " ".join(report["notes"]) and not cache.exists()


def test_dynamic_input_without_manifest_or_shapes(run_cli: RunCli, tmp_path: Path) -> None:
    src = _save(encoder_block(batch="B"), tmp_path / "m.onnx")
    _assert_input_error(run_cli, tmp_path, [str(src)], "--shapes x:SHAPE")


@pytest.mark.parametrize(
    "args,match",
    [
        (["--shapes", "x:1x16"], "rank 2"),
        (["--shapes", "x:1x17x16"], "axis 1 of 'x' is fixed at 16"),
        (["--shapes", "y:1x16x16"], "model's inputs are x"),
        (["--min-shapes", "x:1x16x16"], "give all of --min-shapes"),
        (["--shapes", "x16x16"], "NAME:SHAPE"),
        (["--compute-capability", "9.0"], "8.6"),
        (["--runtime", "onnxruntime"], "--runtime must be one of"),
        (["--plugin", "/nonexistent/libfused.so"], "no such file"),
    ],
)
def test_bad_options_are_one_line_exit_2(run_cli: RunCli, tmp_path: Path, args: list[str], match: str) -> None:
    src = _save(encoder_block(), tmp_path / "m.onnx")
    _assert_input_error(run_cli, tmp_path, [str(src), *args], match)


def test_plugin_not_found_names_what_was_looked_for(run_cli: RunCli, tmp_path: Path) -> None:
    import _ctypes  # a shared library that loads anywhere and registers no TensorRT plugin

    src = _save(encoder_block(), tmp_path / "m.onnx")
    _assert_input_error(run_cli,
        tmp_path, [str(src), "--plugin", _ctypes.__file__],
        f"no creator named 'FusedAttention', namespace 'attn_deploy', version '1' is registered after loading {_ctypes.__file__}",
    )


def test_unsupported_op_names_node_and_op_type(run_cli: RunCli, tmp_path: Path) -> None:
    model = encoder_block()
    model.graph.node.append(onnx.helper.make_node("NonZero", ["out"], ["nz"], name="find_boxes"))
    model.graph.output.append(onnx.helper.make_tensor_value_info("nz", onnx.TensorProto.INT64, [2, "n"]))
    src = _save(model, tmp_path / "m.onnx")
    _assert_input_error(run_cli, tmp_path, [str(src)], "node 'find_boxes' (NonZero)", code=1)


def test_not_an_onnx_file(run_cli: RunCli, tmp_path: Path) -> None:
    bogus = tmp_path / "m.onnx"
    bogus.write_bytes(b"\x00garbage" * 10)
    _assert_input_error(run_cli, tmp_path, [str(bogus)], "is not an ONNX model")


def test_running_without_a_gpu_says_so(run_cli: RunCli, tmp_path: Path) -> None:
    if gpu_available()[0]:
        pytest.skip("a GPU is present: the no-GPU message cannot be produced here")
    from attn_deploy.runtime.gpu import NoGpuError
    from attn_deploy.runtime.trt_runner import TrtRunner

    _build(run_cli, tmp_path, encoder_block())
    with pytest.raises(NoGpuError, match="build-trt still builds them"):
        TrtRunner(tmp_path / "m.engine")


def test_engine_runs_and_matches_onnxruntime(run_cli: RunCli, tmp_path: Path) -> None:
    ok, why = gpu_available()
    if not ok:
        pytest.skip(f"running an engine needs an NVIDIA GPU: {why}")
    from attn_deploy.check.stats import error_stats
    from attn_deploy.runtime.trt_runner import TrtRunner
    from tests.attention_graphs import example_feeds
    from tests.conftest import run_ort

    model = encoder_block(8, 16)
    _build(run_cli, tmp_path, model)
    trt_runner = TrtRunner(tmp_path / "m.engine")
    feeds = example_feeds(model)
    got = trt_runner.infer(feeds)
    for name, ref in zip(["out", "probs"], run_ort(model, feeds)):
        s = error_stats(name, ref, got[name])
        assert s.rel_to_max <= 1e-3 and s.cosine >= 0.9999, s


def test_json_report_on_stdout(run_cli: RunCli, tmp_path: Path) -> None:
    src = _save(encoder_block(8, 8), tmp_path / "m.onnx")
    code, stdout, stderr = run_cli("build-trt", str(src), "--fp16", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["fused_attention"][0]["choice"] == "native-attention"
    assert report["network_layers"]["count"] > 0  # the summary; the full list is in m.engine.json
    assert (tmp_path / "m.engine").is_file() and (tmp_path / "m.engine.json").is_file()
