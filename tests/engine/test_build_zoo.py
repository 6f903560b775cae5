"""Every zoo entry builds a real engine with TensorRT-RTX on this GPU-less machine, fp32 and fp16.

The Faster R-CNN entries' full graphs use NonZero, which the builder lacks: the error must name it,
and their ``--submodule backbone`` export (the part with the attention) must build.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attn_deploy.errors import AttnDeployError
from attn_deploy.export import ExportOptions, export_model
from attn_deploy.export.loading import load_model
from attn_deploy.zoo import list_entries
from tests.small_detector import INPUT_SHAPE, resized

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip tensorrt-rtx-cu13) builds the engines")

from attn_deploy.engine import BuildOptions, build_engine  # noqa: E402

SMALL = [e.name for e in list_entries() if not e.is_detector]
DETECTORS = [e.name for e in list_entries() if e.is_detector]


def _build(onnx_path: Path, fp16: bool) -> list[str]:
    engine = onnx_path.with_name(onnx_path.stem + ("-fp16" if fp16 else "") + ".engine")
    result = build_engine(onnx_path, engine, BuildOptions(runtime="tensorrt-rtx", fp16=fp16))
    assert engine.stat().st_size > 100_000
    assert result.report_path.exists()
    return [node["choice"] for node in result.report["fused_attention"]]


@pytest.mark.parametrize("name", SMALL)
def test_zoo_entry_builds_fp32_and_fp16(name: str, tmp_path: Path) -> None:
    loaded = load_model(f"zoo:{name}")
    onnx_path = export_model(loaded, tmp_path / f"{name}.onnx").onnx_path
    for fp16 in (False, True):
        choices = _build(onnx_path, fp16)
        assert len(choices) == loaded.expected_attention_blocks


@pytest.mark.slow
def test_detector_full_graph_names_the_missing_op(tmp_path: Path) -> None:
    loaded = resized(load_model("zoo:frcnn-r50-fpn-layer4"))
    full = export_model(loaded, tmp_path / "full.onnx", ExportOptions(input_shapes=(INPUT_SHAPE,))).onnx_path
    with pytest.raises(AttnDeployError, match="NonZero"):
        _build(full, fp16=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_backbone_builds(name: str, tmp_path: Path) -> None:
    loaded = resized(load_model(f"zoo:{name}"))  # the 800-px default took 75 s of CI to build
    backbone = export_model(loaded, tmp_path / "backbone.onnx", ExportOptions(submodule="backbone")).onnx_path
    assert len(_build(backbone, fp16=True)) == loaded.expected_attention_blocks
