"""``attn-deploy visualize`` on zoo models with scikit-image's sample photographs, and its one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import RunCli
from tests.visualize.test_maps import photo


def _check_folder(out: Path, attentions: int, images: int) -> None:
    """Every PNG opens, index.html shows each one, maps.npz has rows summing to 1."""
    html = (out / "index.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= images * (attentions + 1)  # one per image x attention, and a contact sheet per image
    for png in pngs:
        with Image.open(png) as img:
            img.verify()
        assert f'src="{png.name}"' in html
    assert set(re.findall(r'src="([^"]+)"', html)) == {p.name for p in pngs}
    maps = np.load(out / "maps.npz")
    rows = [maps[k] for k in maps.files if k.endswith("_torch")]
    assert len(rows) == images * attentions
    for r in rows:
        np.testing.assert_allclose(r.sum(axis=-1), 1.0, atol=1e-5)


def test_vit_with_class_token(run_cli: RunCli, tmp_path: Path) -> None:
    image = photo(tmp_path / "astronaut.png", "astronaut")
    out = tmp_path / "vit"
    result = run_cli("visualize", "zoo:sdpa-vit", "--data", image, "-o", out, "--query", "256,200", "--heads")
    assert result.exit_code == 0, result.output
    _check_folder(out, attentions=4, images=1)
    html = (out / "index.html").read_text()
    assert "14x14 tokens at stride 16 after 1 extra token" in html and "blocks.0.attn" in html
    maps = np.load(out / "maps.npz")
    # 256,200 in a 512x512 photo -> 112,87.5 of the 224x224 input -> patch row 5, col 7, after the class token
    assert maps["image0_site0_tokens"].tolist() == [[0, 1 + 5 * 14 + 7]]
    assert maps["image0_site0_torch"].shape == (3, 1, 197)


def test_fpn_levels(run_cli: RunCli, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "chelsea"):
        photo(photos / f"{name}.png", name)
    out = tmp_path / "fpn"
    result = run_cli("visualize", "zoo:fpn-multiscale", "--data", photos, "-o", out, "--points", "2")
    assert result.exit_code == 0, result.output
    _check_folder(out, attentions=5, images=2)
    maps = np.load(out / "maps.npz")
    strides = [maps[f"site{i}_grid"][2] for i in range(5)]
    assert strides == [4, 8, 16, 32, 64]  # P2..P5 and the pool level, each on its own grid
    assert all(maps[f"image0_site{i}_torch"].shape[1] == 2 for i in range(5))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--query", "3"], "must be x,y"),
        (["--diff"], "--diff compares PyTorch with ONNX Runtime"),
        (["--node", "nope"], "--node 'nope' names no attention"),
    ],
)
def test_bad_input_is_one_line(run_cli: RunCli, tmp_path: Path, args: list[str], match: str) -> None:
    image = photo(tmp_path / "chelsea.png", "chelsea", size=(64, 48))
    out = tmp_path / "out"
    run_cli("visualize", "zoo:sdpa-vit", "--data", image, "-o", out, *args).assert_error(match)
    assert not out.exists()


def test_refuses_a_folder_it_did_not_write(run_cli: RunCli, tmp_path: Path) -> None:
    image = photo(tmp_path / "chelsea.png", "chelsea", size=(64, 48))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    run_cli("visualize", "zoo:sdpa-vit", "--data", image, "-o", tmp_path / "mine").assert_error("is not an earlier visualize output")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
