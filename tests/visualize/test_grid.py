"""Query pixel <-> token on the grids attentions work on: feature maps, FPN levels, ViT patches, windows."""

from __future__ import annotations

import numpy as np
import pytest

from attn_deploy.errors import InputError
from attn_deploy.visualize.grid import TokenGrid, infer_grid, known_grid


@pytest.mark.parametrize(
    ("tokens", "image", "windows", "expected"),
    [
        (197, (224, 224), 1, (14, 14, 16.0, 1, 0)),  # ViT-S/16: class token + 14x14 patches
        (850, (800, 1066), 1, (25, 34, 32.0, 0, 0)),  # Faster R-CNN layer4 (padded to 800x1088)
        (4096, (256, 256), 1, (64, 64, 4.0, 0, 0)),  # FPN P2
        (16, (256, 256), 1, (4, 4, 64.0, 0, 0)),  # FPN pool level
        (49, (224, 224), 16, (28, 28, 8.0, 0, 7)),  # 7x7 windows, 16 of them
    ],
)
def test_infer_grid(tokens: int, image: tuple[int, int], windows: int, expected: tuple[int, int, float, int, int]) -> None:
    g = infer_grid(tokens, image, windows)
    assert (g.h, g.w, g.stride_y, g.extra, g.window) == expected
    assert g.stride_x == g.stride_y and not g.known


def test_known_grid_keeps_the_detectors_padding() -> None:
    """A stride-4 FPN level of an 800x1066 image padded to 1088: 200x272 tokens, still stride 4."""
    g = known_grid((200, 272), (800, 1066), 200 * 272)
    assert g is not None and g.known and (g.stride_y, g.stride_x) == (4.0, 4.0)
    assert g.token(1065, 799) == (0, 199 * 272 + 266)
    assert known_grid((200, 272), (800, 1066), 197) is None


def test_token_and_centre_round_trip() -> None:
    vit = TokenGrid(14, 14, 16.0, 16.0, extra=1)
    assert vit.token(0, 0) == (0, 1) and vit.token(223, 223) == (0, 196)
    assert vit.centre(0, 0) is None  # the class token has no pixel
    for x, y in [(5, 7), (100, 30), (223, 0)]:
        window, token = vit.token(x, y)
        cx, cy = vit.centre(window, token)  # type: ignore[misc]
        assert abs(cx - x) <= 8 and abs(cy - y) <= 8
    swin = TokenGrid(8, 8, 4.0, 4.0, window=4)
    assert swin.windows == 4 and swin.tokens == 16
    window, token = swin.token(20, 3)  # column 5, row 0: the second window, its token 1
    assert (window, token) == (1, 1)
    assert swin.centre(window, token) == (22.0, 2.0)
    row = np.zeros(16)
    row[token] = 1.0
    heat = swin.layout(window, row)
    assert heat.shape == (8, 8) and heat[0, 5] == 1.0 and heat.sum() == 1.0


def test_no_grid_is_one_line_error() -> None:
    with pytest.raises(InputError, match="cannot place 7 tokens in 16 windows"):
        infer_grid(7, (224, 224), windows=16)  # 7 tokens make no square window
