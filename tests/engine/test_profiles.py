"""Optimisation profiles without TensorRT: defaults from the manifest, explicit ranges, bounds checks."""

from __future__ import annotations

import pytest

from attn_deploy.engine.profiles import InputProfile, describe, outside_profile, parse_named_shapes, resolve_profile
from attn_deploy.errors import InputError
from tests.attention_graphs import encoder_block

NONE: dict = {}


def test_static_input_is_its_own_profile() -> None:
    (p,) = resolve_profile(encoder_block(), None, shapes=NONE, min_shapes=NONE, opt_shapes=NONE, max_shapes=NONE)
    assert p == InputProfile("x", (1, 16, 16), (1, 16, 16), (1, 16, 16)) and p.is_static


def test_dynamic_axes_default_around_the_export_shape() -> None:
    manifest = {"export_input_shapes": [[2, 16, 16]]}
    (p,) = resolve_profile(encoder_block(batch="B"), manifest, shapes=NONE, min_shapes=NONE, opt_shapes=NONE, max_shapes=NONE)
    assert (p.min, p.opt, p.max) == ((1, 16, 16), (2, 16, 16), (4, 16, 16))
    assert describe(p) == "min 1x16x16, opt 2x16x16, max 4x16x16"


def test_shapes_outside_the_profile() -> None:
    p = InputProfile("x", (1, 3, 224, 224), (1, 3, 448, 448), (2, 3, 640, 640))
    assert not outside_profile(p, (2, 3, 640, 224))
    assert outside_profile(p, (3, 3, 448, 448)) and outside_profile(p, (1, 3, 100, 448)) and outside_profile(p, (1, 3, 448))


def test_min_above_max_is_an_input_error() -> None:
    big, small = {"x": (4, 16, 16)}, {"x": (1, 16, 16)}
    with pytest.raises(InputError, match="min <= opt <= max"):
        resolve_profile(encoder_block(batch="B"), None, shapes=NONE, min_shapes=big, opt_shapes=small, max_shapes=small)


def test_parse_named_shapes() -> None:
    assert parse_named_shapes(["a:1x2", "b:c:3x4"], "--shapes") == {"a": (1, 2), "b:c": (3, 4)}
    with pytest.raises(InputError, match="NAME:SHAPE"):
        parse_named_shapes(["a:1x0"], "--shapes")
