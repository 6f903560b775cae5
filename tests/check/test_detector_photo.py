"""Faster R-CNN with attention, PyTorch vs ONNX Runtime, on a real photograph shipped by scikit-image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunCli

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photographs")


@pytest.mark.slow
def test_frcnn_layer4_boxes_match_on_a_photograph(run_cli: RunCli, tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    report = tmp_path / "report.json"
    result = run_cli("check", "zoo:frcnn-r50-fpn-layer4", "--data", str(photo), "--iou", "0.9", "--report", str(report))
    assert result.exit_code == 0, result.stdout + result.stderr
    detection = json.loads(report.read_text())["comparisons"][0]["detection"]
    assert detection["reference_count"] > 10
    assert detection["matched_fraction"] >= 0.99 and detection["min_iou"] >= 0.9
