"""attn_deploy.shapes: the one parser of SHAPE, NAME:SHAPE and [NAME:]SHAPE; errors name the option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attn_deploy.errors import InputError
from attn_deploy.shapes import (
    InputDecl,
    parse_input,
    parse_inputs,
    parse_named_shapes,
    parse_optional_named,
    parse_shape,
)


def test_parse_shape() -> None:
    assert parse_shape("1x3X224x224") == (1, 3, 224, 224)
    for bad in ("", "1xa", "1x0x2", "1x-2", "x16"):
        with pytest.raises(InputError, match="--input-shape"):
            parse_shape(bad)
    with pytest.raises(InputError, match="--shapes"):
        parse_shape("1xa", "--shapes")


def test_named_shapes_need_a_name() -> None:
    assert parse_named_shapes(["images:1x3x8x8", "mask:1x8"], "--min-shapes") == {"images": (1, 3, 8, 8), "mask": (1, 8)}
    for bad in ("1x3x8x8", ":1x3", "x:1xq", "x:"):
        with pytest.raises(InputError, match="--min-shapes .*NAME:SHAPE"):
            parse_named_shapes([bad], "--min-shapes")


def test_optional_names() -> None:
    assert parse_optional_named(["images:1x3x8x8", "1x4"]) == {"images": (1, 3, 8, 8), "": (1, 4)}
    assert parse_optional_named(["a:b:1x2"]) == {"a:b": (1, 2)}
    with pytest.raises(InputError, match=r"--input-shape 'x:1xz' is not \[NAME:\]SHAPE"):
        parse_optional_named(["x:1xz"])


def test_input_with_name_shape_and_dtype() -> None:
    assert parse_input("input_ids:1x128:int64") == InputDecl("input_ids", (1, 128), "int64")
    assert parse_input("images:1x3x8x8") == InputDecl("images", (1, 3, 8, 8))  # dtype: the model's, else float32
    assert parse_input("1x16:INT32") == InputDecl("", (1, 16), "int32")
    assert parse_input("a:b:1x2") == InputDecl("a:b", (1, 2))
    for bad in ("ids:1x128:int65", "ids:1xq:int64", "ids::int64", "int64"):
        with pytest.raises(InputError, match=r"--input .* is not \[NAME:\]SHAPE\[:DTYPE\]"):
            parse_input(bad)


def test_inputs_from_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "examples.npz"
    np.savez(path, input_ids=np.zeros((1, 7), np.int64), attention_mask=np.ones((1, 7), np.bool_))
    assert parse_inputs([str(path)]) == [InputDecl("input_ids", (1, 7), "int64"), InputDecl("attention_mask", (1, 7), "bool")]
    np.savez(path, x=np.zeros((1, 7), np.complex64))
    with pytest.raises(InputError, match="the model takes numbers"):
        parse_inputs([str(path)])
    with pytest.raises(InputError, match="no such .npz"):
        parse_inputs([str(tmp_path / "missing.npz")])


def test_inputs_are_all_named_or_none() -> None:
    with pytest.raises(InputError, match="name every input or none"):
        parse_inputs(["ids:1x4:int64", "1x4"])
    with pytest.raises(InputError, match="described twice"):
        parse_inputs(["ids:1x4:int64", "ids:1x5:int64"])
