"""A user's torchvision detector (``module:factory``) is recognised by what it returns: check and quantize match detections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from attn_deploy.export.detector import detection_layout
from attn_deploy.runtime import OrtRunner
from tests.conftest import RunCli

MODEL = "tests.user_models.models:detector"
#: Names that say nothing about the roles, as TorchScript's numeric ones do.
NAMES = "det_a,det_b,det_c"
ROLES = {"boxes": "det_a", "labels": "det_b", "scores": "det_c"}

pytestmark = pytest.mark.slow


def test_layout_of_torchvision_style_outputs() -> None:
    det = {"boxes": torch.zeros(3, 4), "labels": torch.zeros(3, dtype=torch.int64), "scores": torch.zeros(3)}
    layout = detection_layout([det])
    assert layout is not None and layout.count == 3 and layout.roles == {"boxes": 0, "scores": 2, "labels": 1}
    assert layout.output_names(()) == ("boxes", "labels", "scores")
    extra = detection_layout((torch.zeros(2), [dict(det, masks=torch.zeros(3, 1, 8, 8))]))
    assert extra is not None and extra.roles == {"boxes": 1, "scores": 3, "labels": 2} and extra.output_names(()) == (
        "output_0", "boxes", "labels", "scores", "output_4")
    assert detection_layout(torch.zeros(3, 4)) is None and detection_layout({"boxes": torch.zeros(3)}) is None


@pytest.fixture(scope="module")
def detector_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from attn_deploy.cli import app

    out = tmp_path_factory.mktemp("det") / "det.onnx"
    result = CliRunner().invoke(app, ["export", MODEL, "--input-shape", "1x3x64x64", "--output-names", NAMES, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


def test_export_records_the_detection_outputs(detector_onnx: Path) -> None:
    manifest = json.loads(detector_onnx.with_suffix(".json").read_text())
    assert manifest["detection"] == {"boxes": "det_a", "scores": "det_c", "labels": "det_b"}
    # torchvision's defaults, found on the module: what check and quantize need for borderline detections.
    assert manifest["detection_selection"] == {"score_threshold": 0.05, "max_detections": 100, "found": "roi_heads"}
    # MultiScaleRoIAlign's level merge runs as row copies (export/row_scatter.py), and says so.
    ops = [n.op_type for n in onnx.load(detector_onnx).graph.node]
    assert "ScatterElements" not in ops and ops.count("ScatterND") >= 1
    assert any("ScatterND" in note for note in manifest["notes"])
    assert manifest["exporter"] == "torchscript" and [o["dynamic_axes"] for o in manifest["outputs"]] == [[0], [0], [0]]
    runner = OrtRunner(detector_onnx)
    rng = np.random.default_rng(0)
    a, b = (runner.infer({"input": rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)}) for _ in range(2))
    assert len(a["det_a"]) > 5  # random weights still detect: the comparison has boxes to match
    assert len(a["det_a"]) != len(b["det_a"]) or np.abs(a["det_a"] - b["det_a"]).max() > 0.1  # detections follow the image


def test_check_matches_detections(run_cli: RunCli, detector_onnx: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    code, stdout, stderr = run_cli("check", MODEL, str(detector_onnx), "--input-shape", "1x3x64x64", "--backends", "torch,ort", "--report", str(report))
    assert code == 0, stderr
    data = json.loads(report.read_text())
    assert data["settings"]["detection"]["outputs"] == ROLES
    selection = data["settings"]["detection"]["selection"]
    assert selection["score_threshold"] == 0.05 and selection["found"] == "the PyTorch model's roi_heads"
    (comparison,) = data["comparisons"]
    assert comparison["detection"]["reference_count"] > 5 and comparison["detection"]["matched_fraction"] == 1.0
    assert {o["reason"] for o in comparison["outputs"]} == {"judged by detection matching"}
    assert "detections" in stdout


def test_quantize_matches_detections(run_cli: RunCli, detector_onnx: Path, tmp_path: Path) -> None:
    report = tmp_path / "q.json"
    code, stdout, stderr = run_cli("quantize", str(detector_onnx), "-o", str(tmp_path / "int8.onnx"), "--iterations", "1", "--report", str(report))
    assert code == 0, stderr
    data = json.loads(report.read_text())
    assert data["detection"]["outputs"] == ROLES and data["detection"]["reference_detections"] > 5
    assert data["detection"]["matched_fraction"] >= 0.9 and data["parity"] == []
    assert "detections matched" in stdout
