"""export --submodule: a named part of a model exports on its own, outputs flattened and named."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import onnx
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from attn_deploy.cli import app
from attn_deploy.errors import InputError
from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.export.submodule import resolve_submodule
from attn_deploy.zoo import SelfAttention
from attn_deploy.zoo.detection import DetectorOutputs
from tests.conftest import run_ort

runner = CliRunner()


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.attention = SelfAttention(16)
        self.down = nn.Conv2d(16, 16, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        a = self.attention(self.stem(x))
        return OrderedDict([("0", a), ("pool", self.down(a))])


class _Toy(nn.Module):
    """Stands for a detector: a backbone with attention, then a head that is not exportable as is."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Backbone()
        self.head = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return torch.nonzero(self.backbone(x)["pool"] > 0)


def toy() -> nn.Module:
    torch.manual_seed(0)
    model = _Toy()
    with torch.no_grad():
        model.backbone.attention.gamma.fill_(0.7)
    return model


@pytest.fixture
def factory() -> str:
    """A dotted ``package.module:factory`` spec for :func:`toy`."""
    return "tests.export.test_submodule:toy"


def test_backbone_exports_with_one_output_per_level(tmp_path: Path, factory: str) -> None:
    out = tmp_path / "bb.onnx"
    result = runner.invoke(app, ["export", factory, "--submodule", "backbone", "--input-shape", "1x3x32x32", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    model = onnx.load(out)
    assert len(fused_attention_nodes(model)) == 1
    assert [o.name for o in model.graph.output] == ["backbone_0", "backbone_pool"]
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["source"] == "tests.export.test_submodule:toy#backbone"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = toy().eval().backbone(x)
    for got, want in zip(run_ort(model, {"input": x.numpy()}), expected.values()):
        assert got.shape == tuple(want.shape)
        assert abs(got - want.numpy()).max() <= 1e-4 * abs(want.numpy()).max()


def test_unknown_submodule_lists_the_parts(tmp_path: Path, factory: str) -> None:
    out = tmp_path / "x.onnx"
    result = runner.invoke(app, ["export", factory, "--submodule", "neck", "--input-shape", "1x3x32x32", "-o", str(out)])
    assert result.exit_code == 2
    assert "has no submodule 'neck'; its parts are: backbone, head" in result.stderr
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))


def test_detector_paths_resolve_under_detector() -> None:
    wrapped = DetectorOutputs(toy())
    name, module = resolve_submodule(wrapped, "backbone", "zoo:x")
    assert name == "detector.backbone" and isinstance(module, _Backbone)
    assert resolve_submodule(wrapped, "backbone.attention", "zoo:x")[0] == "detector.backbone.attention"
    with pytest.raises(InputError, match="its parts are: backbone, head"):
        resolve_submodule(wrapped, "rpn", "zoo:x")


@pytest.mark.slow
def test_zoo_detector_backbone_gets_the_transformed_image_shape() -> None:
    from attn_deploy.export.loading import load_model
    from attn_deploy.export.submodule import select_submodule

    part = select_submodule(load_model("zoo:frcnn-r50-fpn-layer4"), "backbone")
    assert part.input_shapes == ((1, 3, 800, 1088),)  # 800x1066 resized to an 800 side, padded to /32
    assert part.output_names == ("backbone_0", "backbone_1", "backbone_2", "backbone_3", "backbone_pool")
