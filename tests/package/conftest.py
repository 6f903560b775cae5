"""The zoo's SAGAN block (C=256) on a 16x16 map, exported once per session (batch axis dynamic, and static), and a
small RGB model whose manifest records image preprocessing (the ensemble's case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHAPE = (1, 256, 16, 16)
INPUT_SHAPE = "x".join(map(str, SHAPE))


@pytest.fixture(scope="session")
def sagan_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``zoo:sagan-256`` exported with ``--dynamic 0`` (what Triton batches)."""
    from attn_deploy import api

    path = tmp_path_factory.mktemp("sagan") / "sagan.onnx"
    api.export("zoo:sagan-256", input_shapes=[SHAPE], dynamic_axes=[0]).save(path)
    return path


@pytest.fixture(scope="session")
def sagan_static_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same block with every axis static."""
    from attn_deploy import api

    path = tmp_path_factory.mktemp("sagan-static") / "static.onnx"
    api.export("zoo:sagan-256", input_shapes=[SHAPE]).save(path)
    return path


#: What the zoo's image models record (ImageNet normalisation outside the graph).
IMAGENET = {"range": [0.0, 1.0], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
IMAGE_SHAPE = (1, 3, 32, 40)


@pytest.fixture(scope="session")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A conv stem + SAGAN block on RGB images, exported with a dynamic batch; its manifest records the
    zoo's ImageNet preprocessing (outside the graph, as for the zoo's FPN backbones)."""
    from attn_deploy import api
    from attn_deploy.artifact.artifact import Artifact
    from attn_deploy.zoo.blocks import SelfAttention

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(), SelfAttention(16)).eval()
    exported = api.export(module, input_shapes=[IMAGE_SHAPE], dynamic_axes=[0], exporter="torchscript", output_names=["features"])
    path = tmp_path_factory.mktemp("image") / "net.onnx"
    Artifact(exported.proto, exported.manifest.replace(preprocess=IMAGENET)).save(path)
    return path, module


def preprocess_reference(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """The manifest's preprocessing in torch: uint8 NHWC -> antialiased bilinear resize -> [0, 1] -> ImageNet mean/std."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", antialias=True) / 255.0
    mean, std = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1), torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    return ((x - mean) / std).numpy()
