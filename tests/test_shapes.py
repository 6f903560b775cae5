"""attn_deploy.shapes: the one parser of SHAPE, NAME:SHAPE and [NAME:]SHAPE; errors name the option."""

from __future__ import annotations

import pytest

from attn_deploy.errors import InputError
from attn_deploy.shapes import parse_named_shapes, parse_optional_named, parse_shape


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
