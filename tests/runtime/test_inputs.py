"""Inputs from random numbers, .npz files and images, shaped per the model and its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attn_deploy.errors import InputError
from attn_deploy.runtime.inputs import (
    InputSpec,
    image_feeds,
    load_samples,
    random_feeds,
)

IMG = [InputSpec("images", (1, 3, 6, 8), np.dtype(np.float32))]


def test_random_is_seeded_and_ranged() -> None:
    a = random_feeds(IMG, 3, (0.0, 1.0), None)["images"]
    assert np.array_equal(a, random_feeds(IMG, 3, (0.0, 1.0), None)["images"])
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.dtype == np.float32
    detector = random_feeds(IMG, 3, None, {"range": [0, 1], "mean": None})["images"]
    assert detector.min() >= 0.0
    assert random_feeds(IMG, 3, None, None)["images"].min() < 0.0  # N(0, 1) by default


def test_npz(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, images=np.ones((1, 3, 6, 8), np.float64))
    (feeds,) = load_samples(path, IMG)
    assert feeds["images"].dtype == np.float32
    np.savez(path, images=np.ones((1, 3, 5, 8)))
    with pytest.raises(InputError, match="expects"):
        load_samples(path, IMG)


def test_images_are_resized_and_normalised(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), (255, 0, 51)).save(tmp_path / "a.png")
    Image.new("RGB", (10, 10), (0, 0, 0)).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("ignored")
    samples = image_feeds(tmp_path, IMG, {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    assert len(samples) == 2
    red = samples[0]["images"]
    assert red.shape == (1, 3, 6, 8)
    np.testing.assert_allclose(red[0, :, 0, 0], [1.0, -1.0, -0.6], atol=1e-6)
    with pytest.raises(InputError, match="3 channels"):
        image_feeds(tmp_path / "a.png", [InputSpec("x", (1, 256, 8, 8), np.dtype(np.float32))], None)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        image_feeds(tmp_path / "bad.png", IMG, None)
