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
    token_bounds,
)

IMG = [InputSpec("images", (1, 3, 6, 8), np.dtype(np.float32))]


def test_random_is_seeded_and_ranged() -> None:
    a = random_feeds(IMG, 3, (0.0, 1.0), None)["images"]
    assert np.array_equal(a, random_feeds(IMG, 3, (0.0, 1.0), None)["images"])
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.dtype == np.float32
    detector = random_feeds(IMG, 3, None, {"range": [0, 1], "mean": None})["images"]
    assert detector.min() >= 0.0
    image = random_feeds(IMG, 3, None, None)["images"]  # a 3-channel NCHW input: an image in [0, 1]
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.2
    normalised = random_feeds(IMG, 3, None, {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})["images"]
    assert normalised.min() < 0.0  # normalised images: N(0, 1)
    features = [InputSpec("x", (1, 8, 6, 8), np.dtype(np.float32))]
    assert random_feeds(features, 3, None, None)["x"].min() < 0.0  # N(0, 1) for other floats


def test_integer_inputs_are_token_ids_in_range_and_masks_are_ones() -> None:
    specs = [
        InputSpec("input_ids", (2, 64), np.dtype(np.int64), high=50),
        InputSpec("attention_mask", (2, 64), np.dtype(np.int64)),
        InputSpec("keep", (2, 64), np.dtype(np.bool_)),
        InputSpec("positions", (2, 64), np.dtype(np.int32)),
    ]
    feeds = random_feeds(specs, 0, None, None)
    ids = feeds["input_ids"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 50 and len(np.unique(ids)) > 20
    assert feeds["attention_mask"].dtype == np.int64 and (feeds["attention_mask"] == 1).all()
    assert feeds["keep"].dtype == np.bool_ and feeds["keep"].all()
    assert set(np.unique(feeds["positions"])) <= {0, 1}  # no table known: 0/1
    assert random_feeds(specs, 0, None, None, vocab=5)["input_ids"].max() < 5
    with pytest.raises(InputError, match="--vocab"):
        random_feeds(specs, 0, None, None, vocab=0)


def test_token_bounds_follow_each_input_to_its_embedding() -> None:
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.zeros((30, 4), np.float32), "tokens")
    types = numpy_helper.from_array(np.zeros((2, 4), np.float32), "types")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["tokens", "input_ids"], ["t"]),
            helper.make_node("Cast", ["token_type_ids"], ["tt"], to=TensorProto.INT64),
            helper.make_node("Gather", ["types", "tt"], ["e"]),
            helper.make_node("Add", ["t", "e"], ["s"]),
            helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["other"], ["o"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["m", "axes"], ["mu"]),
            helper.make_node("Mul", ["s", "mu"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.INT64 if n != "token_type_ids" else TensorProto.INT32, [1, 5])
         for n in ("input_ids", "token_type_ids", "mask", "other")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [table, types, numpy_helper.from_array(np.array([-1], np.int64), "axes")],
    )
    bounds = token_bounds(helper.make_model(graph))
    assert bounds == {"input_ids": 30, "token_type_ids": 2, "other": 30}  # other: the first table's rows; masks none


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
