"""Tiny exported attention models shared by the quantize tests (exported once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attn_deploy.export import ExportOptions, export_model
from attn_deploy.export.loading import LoadedModel
from attn_deploy.zoo import CrossRegionAttention, SelfAttention
from attn_deploy.zoo.registry import seed_zero_parameters


def export_tiny(module: torch.nn.Module, shape: tuple[int, ...], out: Path, options: ExportOptions | None = None) -> Path:
    torch.manual_seed(0)
    seed_zero_parameters(module)
    loaded = LoadedModel(module=module.eval(), source="tiny", input_shapes=(shape,), input_names=("input",), output_names=("output",))
    return export_model(loaded, out, options or ExportOptions()).onnx_path


@pytest.fixture(scope="session")
def tiny_sagan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return export_tiny(SelfAttention(32), (1, 32, 6, 8), tmp_path_factory.mktemp("sagan") / "sagan.onnx")


@pytest.fixture(scope="session")
def tiny_cross_region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    module = CrossRegionAttention(16, strips=2)
    return export_tiny(module, (1, 16, 4, 6), tmp_path_factory.mktemp("cross") / "cross.onnx")


@pytest.fixture(scope="session")
def tiny_sagan_dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TorchScript export with dynamic H, W: flatten(2) becomes Reshape(y, Concat(Slice(Shape(y)), [-1]))."""
    torch.manual_seed(0)
    options = ExportOptions(dynamic_axes=(2, 3), exporter="torchscript")
    return export_tiny(SelfAttention(32), (1, 32, 6, 8), tmp_path_factory.mktemp("dyn") / "sagan_dyn.onnx", options)
