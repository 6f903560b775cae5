"""Attention maps: right by construction, the same from PyTorch and ONNX Runtime, never N×N in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from attn_deploy import api
from attn_deploy.visualize import render
from attn_deploy.zoo.blocks import SelfAttention
from tests.visualize.models import BeaconNet


def photo(path: Path, name: str = "astronaut", size: tuple[int, int] | None = None) -> Path:
    """A scikit-image sample photograph saved as PNG (``size``: resized to width x height)."""
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)())
    (image.resize(size) if size else image).save(path)
    return path


@pytest.fixture(scope="module")
def beacon(tmp_path_factory: pytest.TempPathFactory) -> tuple[BeaconNet, Path, Path]:
    """The beacon model, its ONNX export and a 128x96 photograph."""
    folder = tmp_path_factory.mktemp("beacon")
    model = BeaconNet().eval()
    onnx_path = folder / "beacon.onnx"
    api.export(model, input_shapes=[(1, 3, 64, 64)], exporter="torchscript").save(onnx_path)
    return model, onnx_path, photo(folder / "astronaut.png", size=(128, 96))


def test_map_peaks_where_the_keys_point(beacon: tuple[BeaconNet, Path, Path], tmp_path: Path) -> None:
    """Every query attends to the beacon token: the map peaks there, rows sum to 1, PyTorch == ORT."""
    model, onnx_path, image = beacon
    out = tmp_path / "maps"
    queries = ((5.0, 5.0), (120.0, 90.0), (64.0, 48.0))  # image pixels (128x96 -> the model's 64x64)
    result = api.visualize(model, [image], out, input_shape=(1, 3, 64, 64), onnx=onnx_path, queries=queries, diff=True)
    maps = np.load(out / "maps.npz")
    torch_rows, ort_rows = maps["image0_site0_torch"], maps["image0_site0_ort"]
    target = BeaconNet.TARGET[0] * 8 + BeaconNet.TARGET[1]
    assert torch_rows.shape == ort_rows.shape == (1, 3, 64)
    assert (torch_rows.argmax(axis=-1) == target).all() and torch_rows[..., target].min() > 0.9
    np.testing.assert_allclose(torch_rows.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ort_rows.sum(axis=-1), 1.0, atol=1e-5)
    assert np.abs(torch_rows - ort_rows).max() <= 1e-5 and result.max_diff is not None and result.max_diff <= 1e-5
    # the query pixels went to their own tokens: (5,5) -> (2.5,3.3) model pixels -> token 0; (120,90) -> the last
    np.testing.assert_array_equal(maps["image0_site0_tokens"][:, 1], [0, 63, 4 * 8 + 4])
    # the rendered heat peaks on the beacon's cell of the displayed image
    site = result.sites[0]
    assert site.grid.known and (site.grid.h, site.grid.w, site.grid.stride_y) == (8, 8, 8.0)
    base = render.load_display(image)
    canvas = render.heat_canvas(site.grid.layout(0, torch_rows[0, 0]), site.grid, (64, 64), base.size)
    y, x = np.unravel_index(int(canvas.argmax()), canvas.shape)
    row, col = int(y / base.height * 8), int(x / base.width * 8)
    assert (row, col) == BeaconNet.TARGET
    html = (out / "index.html").read_text()
    for file in result.files:
        if file.suffix == ".png":
            assert file.name in html
            with Image.open(file) as png:
                png.verify()
    assert any("_diff.png" in f.name for f in result.files)
    assert not list(tmp_path.glob(".maps*"))  # no scratch or temporary folder left beside the output


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


class _SaganNet(nn.Module):
    """A 1x1 conv to 16 channels and a SAGAN block on the full 120x140 image: N = 16,800 tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 1)
        self.attention = SelfAttention(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.attention(self.embed(x))
        return out


def test_maps_never_hold_n_by_n(tmp_path: Path) -> None:
    """At N = 16,800 a full float32 map is 1.1 GB; visualize's peak extra memory stays far below it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:  # resets the peak-RSS mark (VmHWM) to the current RSS
            f.write("5")
    except OSError:
        pytest.skip("cannot reset the peak-RSS mark here (/proc/self/clear_refs)")
    image = photo(tmp_path / "coffee.png", "coffee", size=(140, 120))
    model = _SaganNet().eval()
    model.attention.gamma.data.fill_(1.0)
    before = _rss_kib()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    result = api.visualize(model, [image], tmp_path / "maps", input_shape=(1, 3, 120, 140))
    extra = (_peak_rss_kib() - before) * 1024
    n = 120 * 140
    assert result.sites[0].tokens == n
    maps = np.load(tmp_path / "maps" / "maps.npz")
    rows = maps["image0_site0_torch"]
    assert rows.shape == (1, 3, n)
    np.testing.assert_allclose(rows.sum(axis=-1), 1.0, atol=1e-5)
    assert extra < n * n * 4 / 5, f"visualize took {extra / 1e6:.0f} MB extra at N={n}"


def test_onnx_alone_with_rollout(beacon: tuple[BeaconNet, Path, Path], tmp_path: Path) -> None:
    """From the ONNX model alone (ONNX Runtime): salient points from the node's output, the rows, the rollout."""
    _, onnx_path, image = beacon
    out = tmp_path / "maps"
    result = api.visualize(onnx_path, [image], out, rollout=True, points=2)
    maps = np.load(out / "maps.npz")
    assert "image0_site0_torch" not in maps.files
    rows, rolled = maps["image0_site0_ort"], maps["image0_site0_rollout"]
    target = BeaconNet.TARGET[0] * 8 + BeaconNet.TARGET[1]
    assert rows.shape == (1, 2, 64) and (rows.argmax(axis=-1) == target).all()
    np.testing.assert_allclose(rolled.sum(axis=-1), 1.0, atol=1e-6)
    assert not result.sites[0].grid.known  # the beacon's keys come from no feature map: the grid is inferred
    assert (result.sites[0].grid.h, result.sites[0].grid.w) == (8, 8)


def test_windowed_attention(tmp_path: Path) -> None:
    """Windows on the batch axis: the query's window is found, and its map lands inside that window."""
    from tests.visualize.models import WindowBeaconNet

    image = photo(tmp_path / "chelsea.png", "chelsea", size=(64, 64))
    result = api.visualize(WindowBeaconNet().eval(), [image], tmp_path / "maps", input_shape=(1, 3, 32, 32), queries=((60.0, 4.0),))
    grid = result.sites[0].grid
    assert (grid.h, grid.w, grid.window, grid.stride_y, grid.windows) == (8, 8, 4, 4.0, 4)
    maps = np.load(tmp_path / "maps" / "maps.npz")
    # (60, 4) of the 64x64 photo -> (30, 2) of the input -> token row 0, col 7: the top-right window, its token 3
    assert maps["image0_site0_tokens"].tolist() == [[1, 3]]
    heat = grid.layout(1, maps["image0_site0_torch"][0, 0])
    assert np.unravel_index(int(heat.argmax()), heat.shape) == (1, 5)  # the beacon of the top-right window
    assert heat[:, :4].sum() == 0 and heat[4:].sum() == 0
