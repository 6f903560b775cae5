"""Static (calibrated) int8: convolutions and projections as Q/DQ, attention float, calibrated on photographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from attn_deploy.quantize.dynamic import plan
from attn_deploy.quantize.static import glue_candidates, quantize_static, quantized_static_names
from tests.conftest import RunCli, run_ort

pytestmark = pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript:DeprecationWarning", "ignore:The feature will be removed:DeprecationWarning"
)
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photographs")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(skimage_data, name)()).save(folder / f"{name}.png")
    return folder


def _conv_model(tmp_path: Path) -> onnx.ModelProto:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 8, 1)).eval()
    path = tmp_path / "convs.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), path, input_names=["x"], dynamo=False)
    return onnx.load(path)


def test_convolutions_become_qdq_and_outputs_stay_close(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    rng = np.random.default_rng(0)
    samples = [{"x": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(6)]
    candidates = plan(model, include_convs=True)
    outcome = quantize_static(model, candidates, samples, method="minmax")
    done = quantized_static_names(outcome.model, outcome.candidates)
    assert done == {n.name for n in model.graph.node if n.op_type == "Conv"}
    assert set(outcome.sqnr_db) == done and all(db > 20 for db in outcome.sqnr_db.values())
    held_out = {"x": rng.random((1, 3, 32, 32), dtype=np.float32)}
    ref, out = run_ort(model, held_out)[0], run_ort(outcome.model, held_out)[0]
    cosine = float((ref * out).sum() / np.linalg.norm(ref) / np.linalg.norm(out))
    assert 0.999 <= cosine < 1.0  # close, and really quantized
    assert not np.allclose(run_ort(outcome.model, {"x": held_out["x"] * 0.5})[0], out)  # depends on the input


class _CspBlock(nn.Module):
    """A YOLO-style stage: conv, SiLU (sigmoid x multiply), a residual add and a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(32, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.silu(self.stem(x))
        z = nn.functional.silu(self.a(y)) + y
        return self.b(torch.cat([y, z], dim=1))


def _optimized_op_types(model: onnx.ModelProto, tmp_path: Path) -> set[str]:
    import onnxruntime as ort

    source, optimized = tmp_path / "q.onnx", tmp_path / "q.opt.onnx"
    onnx.save(model, source)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(optimized).graph.node}


def test_the_ops_between_convolutions_run_on_int8_tensors(tmp_path: Path) -> None:
    path = tmp_path / "csp.onnx"
    torch.onnx.export(_CspBlock().eval(), (torch.rand(1, 3, 32, 32),), path, input_names=["x"], dynamo=False)
    model = onnx.load(path)
    samples = [{"x": np.random.default_rng(i).random((1, 3, 32, 32), dtype=np.float32)} for i in range(4)]
    convs = plan(model, include_convs=True)
    glue = glue_candidates(model, convs)
    assert sorted(c.op_type for c in glue) == ["Add", "Concat", "Mul", "Mul", "Sigmoid", "Sigmoid"]

    with_glue = quantize_static(model, convs + glue, samples, method="minmax", target_cosine=None)
    assert {c.name for c in glue} <= quantized_static_names(with_glue.model, with_glue.candidates)
    assert {"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearConcat"} <= _optimized_op_types(with_glue.model, tmp_path)

    convs_only = quantize_static(model, plan(model, include_convs=True), samples, method="minmax", target_cosine=None)
    assert not {"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearConcat"} & _optimized_op_types(convs_only.model, tmp_path)
    # Reading a DequantizeLinear's output is not being int8: the sigmoids and the add there stay float.
    counted = quantized_static_names(convs_only.model, [*convs, *glue])
    assert not {c.name for c in glue if c.op_type in ("Sigmoid", "Add")} & counted
    held_out = {"x": np.random.default_rng(9).random((1, 3, 32, 32), dtype=np.float32)}
    ref, out = run_ort(model, held_out)[0], run_ort(with_glue.model, held_out)[0]
    assert float((ref * out).sum() / np.linalg.norm(ref) / np.linalg.norm(out)) >= 0.99
    assert glue_candidates(model, convs, exclude=("Concat",))[-1].reason == "excluded by --exclude Concat"
    assert glue_candidates(model, convs[:1]) == []  # with the stem alone int8, nothing lies between two int8 convolutions


def test_an_unreachable_target_sends_the_noisiest_nodes_back_to_float(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    samples = [{"x": np.random.default_rng(i).random((1, 3, 32, 32), dtype=np.float32)} for i in range(4)]
    outcome = quantize_static(model, plan(model, include_convs=True), samples, method="minmax", target_cosine=0.9999999)
    auto = [c for c in outcome.candidates if c.reason and c.reason.startswith("kept float automatically")]
    assert auto and outcome.rounds > 1
    assert all(c >= 0.9999999 for c in outcome.output_cosine.values()) or len(auto) == 3


def test_static_quantize_command_on_a_zoo_detector_backbone(run_cli: RunCli, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "fpn_int8.onnx"
    code, stdout, stderr = run_cli("quantize", "zoo:fpn-multiscale", "-o", str(out), "--calibrate", str(photos),
                                   "--input-shape", "1x3x128x128", "--iterations", "1", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)  # stdout is the report alone: the calibrators' progress prints are kept out
    assert report["mode"].startswith("static") and report["static"]["calibration"]["samples"] == len(PHOTOS)
    assert report["options"]["int8_glue"] is True and report["nodes"]["quantized_by_op_type"]["Conv"] >= 10
    model = onnx.load(out)
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(n.input[1] in dequantized for n in convs if n.name in report["nodes"]["quantized"])
    assert sum(n.input[1] in dequantized for n in convs) >= 10  # the backbone and FPN convolutions are int8
    assert not any(n.op_type == "FusedAttention" and n.input[0] in dequantized for n in model.graph.node)
    assert set(report["static"]["node_sqnr_db"]) == set(report["nodes"]["quantized"])
    assert min(report["static"]["output_cosine"].values()) >= 0.999
    assert all(p["cosine"] > 0.99 for p in report["parity"])


def test_static_input_errors(run_cli: RunCli, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    run_cli("quantize", "zoo:sagan-256", "-o", str(out), "--calibrate", str(tmp_path / "missing")).assert_error("missing")
    run_cli("quantize", "zoo:sagan-256", "-o", str(out), "--calibrate", str(photos), "--calibrate-method", "best").assert_error("calibrate-method")
    run_cli("quantize", "zoo:fpn-multiscale", "-o", str(out), "--calibrate", str(photos), "--quantize-attention").assert_error("static")
    run_cli("quantize", "zoo:sagan-256", "-o", str(out), "--calibrate", str(photos)).assert_error("images need one NCHW input")
    assert not out.exists()


def test_a_detector_is_judged_by_its_detections_not_by_cosines(run_cli: RunCli, photos: Path, tmp_path: Path) -> None:
    """Top-k boxes reorder under int8, so their cosine says nothing: the automatic choice matches detections
    as check's gate does, and keeps the convolutions int8 where they do match."""
    out = tmp_path / "det_int8.onnx"
    code, stdout, stderr = run_cli("quantize", "tests.quantize.tiny_detector:tiny_detector", "-o", str(out),
                                   "--calibrate", str(photos), "--input-shape", "1x3x64x64", "--iterations", "1", "--min-matched", "0.9", "--json")
    assert code == 0, stderr
    static = json.loads(stdout)["static"]
    assert static["detection"]["passed"] and static["detection"]["reference_count"] == 20
    assert static["detection"]["matched_fraction"] >= 0.9
    assert not {"boxes", "scores", "labels"} & set(static["output_cosine"])
    quantized = json.loads(stdout)["nodes"]["quantized"]
    assert len(quantized) >= 3 and set(static["node_sqnr_db"]) == set(quantized)


def test_qdq_for_tensorrt_is_what_its_builder_accepts(run_cli: RunCli, photos: Path, tmp_path: Path) -> None:
    """ONNX Runtime's flavour (uint8 with zero points, int32 biases) is refused by TensorRT's parser with a
    pointer to ``--for tensorrt``; that flavour (symmetric int8, float biases, attention nodes kept) builds."""
    common = ("--calibrate", str(photos), "--input-shape", "1x3x64x64", "--iterations", "0", "--target-cosine", "0")
    trt_int8, ort_int8 = tmp_path / "trt_int8.onnx", tmp_path / "ort_int8.onnx"
    code, stdout, stderr = run_cli("quantize", "zoo:fpn-multiscale", "-o", str(trt_int8), *common, "--for", "tensorrt", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["options"]["qdq_for"] == "tensorrt"
    model = onnx.load(trt_int8)
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) >= 10
    zero_points = [initializers[n.input[2]] for n in quantizers]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert not any(initializers.get(n.input[0], np.zeros(1, np.int8)).dtype == np.int32
                   for n in model.graph.node if n.op_type == "DequantizeLinear")
    assert sum(n.op_type == "FusedAttention" for n in model.graph.node) == 5  # kept for build-trt
    run_cli("quantize", "zoo:sagan-256", "-o", str(tmp_path / "x.onnx"), "--for", "tensorrt").assert_error("--calibrate")

    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip tensorrt-rtx-cu13) parses and builds the engines")
    code, _, stderr = run_cli("quantize", "zoo:fpn-multiscale", "-o", str(ort_int8), *common)
    assert code == 0, stderr
    run_cli("build-trt", str(ort_int8), "-o", str(tmp_path / "ort.engine"), "--runtime", "tensorrt-rtx").assert_error("--for tensorrt", code=1)
    code, _, stderr = run_cli("build-trt", str(trt_int8), "-o", str(tmp_path / "trt.engine"), "--runtime", "tensorrt-rtx")
    assert code == 0, stderr
    assert (tmp_path / "trt.engine").stat().st_size > 10_000
    report = json.loads((tmp_path / "trt.engine.json").read_text())
    assert report["precision"] == "int8"
    assert report["network_layers"]["summary"]["by_type"]["QUANTIZE"] >= 10
