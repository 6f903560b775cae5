"""Export behaviour beyond the zoo: reproducibility, manifest, dynamic shapes, exporter fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attn_deploy.artifact.fileio import sha256_file
from attn_deploy.errors import InputError
from attn_deploy.export import ExportOptions, export_model
from attn_deploy.export.loading import LoadedModel, load_model
from attn_deploy.ops import fused_attention
from attn_deploy.runtime import OrtRunner, TorchRunner


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_is_byte_identical(exporter: str, tmp_path: Path) -> None:
    a = export_model(load_model("zoo:cross-region-256"), tmp_path / "a.onnx", ExportOptions(exporter=exporter))  # type: ignore[arg-type]
    b = export_model(load_model("zoo:cross-region-256"), tmp_path / "b.onnx", ExportOptions(exporter=exporter))  # type: ignore[arg-type]
    assert a.onnx_path.read_bytes() == b.onnx_path.read_bytes()


def test_manifest_describes_model_and_attention(tmp_path: Path) -> None:
    result = export_model(load_model("zoo:sagan-256"), tmp_path / "m.onnx")
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest == result.manifest
    assert manifest["output_sha256"] == sha256_file(result.onnx_path)
    assert manifest["opset"] == 18 and manifest["ir_version"] == 10
    assert manifest["inputs"][0]["name"] == "input" and manifest["inputs"][0]["shape"] == [1, 256, 64, 64]
    assert manifest["outputs"][0]["shape"] == [1, 256, 64, 64]
    (node,) = manifest["fused_attention"]
    assert {k: node[k] for k in ("B", "H", "Nq", "Nk", "dk", "dv")} == {"B": 1, "H": 1, "Nq": 4096, "Nk": 4096, "dk": 32, "dv": 256}
    assert node["score_matrix_bytes"] == 4096 * 4096 * 4
    assert node["scale"] == 1.0 and node["has_bias"] is False
    assert {"torch", "onnx", "onnxruntime", "attn-deploy"} <= set(manifest["versions"])


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_dynamic_spatial_axes(exporter: str, tmp_path: Path) -> None:
    loaded = load_model("zoo:sagan-256")
    options = ExportOptions(input_shapes=((1, 256, 16, 16),), dynamic_axes=(2, 3), exporter=exporter)  # type: ignore[arg-type]
    result = export_model(loaded, tmp_path / "d.onnx", options)
    assert result.manifest["inputs"][0]["dynamic_axes"] == [2, 3]
    assert not isinstance(result.manifest["fused_attention"][0]["Nq"], int)
    runner = OrtRunner(result.onnx_path)
    for h, w in [(16, 16), (12, 20), (30, 9)]:
        x = torch.randn(1, 256, h, w).numpy()
        want = TorchRunner(loaded.module, ["input"], ["output"]).infer({"input": x})["output"]
        got = runner.infer({"input": x})["output"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class DataDependent(nn.Module):
    """``torch.export`` cannot trace a Python branch on tensor data; the TorchScript tracer can."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.unsqueeze(1)
        y = fused_attention(q, q, q, scale=0.5).squeeze(1)
        if float(y.sum()) > -1e9:
            y = y * 2
        return y


def test_auto_falls_back_to_torchscript(tmp_path: Path) -> None:
    loaded = LoadedModel(module=DataDependent(), source="data-dependent", input_shapes=((1, 5, 4),))
    result = export_model(loaded, tmp_path / "f.onnx")
    assert result.exporter == "torchscript"
    assert result.notes and "dynamo exporter failed" in result.notes[0]
    assert result.fused_attention_count == 1


def test_input_dtypes_given_or_the_models_own() -> None:
    from attn_deploy.export.exporter import _described

    loaded = LoadedModel(module=nn.Identity(), source="m.pt2", input_shapes=((1, 4), (1, 4)), input_dtypes=("int64", "int64"))
    assert _described(loaded, ExportOptions(input_shapes=((1, 8), (1, 8))), 2).input_dtypes == ("int64", "int64")  # --input-shape keeps them
    assert _described(loaded, ExportOptions(input_dtypes=("int32", None)), 2).input_dtypes == ("int32", "int64")
    plain = LoadedModel(module=nn.Identity(), source="m:f")
    assert _described(plain, ExportOptions(input_dtypes=(None, "bool")), 2).input_dtypes == ("float32", "bool")
    named = _described(plain, ExportOptions(input_names=("a",), output_names=("y",)), 1)
    assert named.input_names == ("a",) and named.output_names == ("y",)
    with pytest.raises(InputError, match="--input-names gives 1 name"):
        _described(plain, ExportOptions(input_names=("a",)), 2)
