"""Heatmaps on the input image (Pillow + a matplotlib colormap): one panel per query, strips and contact sheets.

Coordinates: a grid's tokens are placed in model-input pixels (``TokenGrid`` strides) and scaled to
the displayed image, which is the input image resized as the model saw it (stretched to its H x W),
so a token's heat lands on the pixels it was computed from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attn_deploy.visualize.grid import TokenGrid

if TYPE_CHECKING:
    from PIL import Image

#: Longest side of a rendered panel, and of a contact sheet's thumbnails, in pixels.
PANEL_SIDE = 320
THUMB_SIDE = 160
TITLE_HEIGHT = 18
MARKER = (0, 255, 255)


def load_display(path: Path, side: int = PANEL_SIDE) -> Image.Image:
    """The image at ``path`` as RGB, its longest side ``side`` pixels (aspect kept)."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    scale = side / max(rgb.size)
    return rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.LANCZOS)


def heat_canvas(heat: np.ndarray, grid: TokenGrid, model_hw: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``heat [h, w]`` as a ``[height, width]`` array over the displayed image of ``size`` (width, height):
    each token covers its stride-sized cell of the model input (cells past the image, padding, are cut off)."""
    from PIL import Image

    width, height = size
    fx, fy = width / model_hw[1], height / model_hw[0]
    cells = (max(1, round(grid.w * grid.stride_x * fx)), max(1, round(grid.h * grid.stride_y * fy)))
    scaled = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(cells, Image.Resampling.NEAREST))
    canvas = np.zeros((height, width), np.float32)
    rows, cols = min(height, scaled.shape[0]), min(width, scaled.shape[1])
    canvas[:rows, :cols] = scaled[:rows, :cols]
    return canvas


def _title(panel: Image.Image, text: str) -> Image.Image:
    from PIL import Image, ImageDraw

    out = Image.new("RGB", (panel.width, panel.height + TITLE_HEIGHT), (255, 255, 255))
    out.paste(panel, (0, TITLE_HEIGHT))
    ImageDraw.Draw(out).text((3, 3), text[: max(8, panel.width // 6)], fill=(0, 0, 0))
    return out


def overlay(
    base: Image.Image,
    heat: np.ndarray,
    grid: TokenGrid,
    model_hw: tuple[int, int],
    marker: tuple[float, float] | None,
    title: str,
    *,
    signed: bool = False,
) -> Image.Image:
    """``heat`` over ``base``, scaled from its minimum to its maximum (``signed``: to its largest magnitude,
    blue to red),
    the query ``marker`` (a model-input pixel) drawn as a cyan ring, ``title`` above."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    canvas = heat_canvas(heat, grid, model_hw, base.size)
    if signed:
        peak = float(np.abs(canvas).max()) or 1.0
        colours = colormaps["coolwarm"](0.5 + 0.5 * canvas / peak)[..., :3]
        alpha = 0.75 * np.abs(canvas) / peak
    else:  # from the map's own minimum to its maximum, so a nearly uniform map still shows its shape
        low, high = float(heat.min()), float(heat.max())
        level = np.clip((canvas - low) / ((high - low) or 1.0), 0.0, 1.0)
        colours = colormaps["inferno"](level)[..., :3]
        alpha = 0.2 + 0.6 * level  # a dim veil everywhere, so where attention is not shows too
    photo = np.asarray(base, np.float32) / 255.0
    mixed = photo * (1 - alpha[..., None]) + colours * alpha[..., None]
    panel = Image.fromarray((np.clip(mixed, 0, 1) * 255).astype(np.uint8))
    if marker is not None:
        x = marker[0] * base.width / model_hw[1]
        y = marker[1] * base.height / model_hw[0]
        r = max(4, base.width // 60)
        draw = ImageDraw.Draw(panel)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=MARKER, width=2)
        draw.line((x - 2 * r, y, x - r, y), fill=MARKER, width=2)
        draw.line((x + r, y, x + 2 * r, y), fill=MARKER, width=2)
        draw.line((x, y - 2 * r, x, y - r), fill=MARKER, width=2)
        draw.line((x, y + r, x, y + 2 * r), fill=MARKER, width=2)
    return _title(panel, title)


def strip(panels: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Panels side by side."""
    from PIL import Image

    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for panel in panels:
        out.paste(panel, (x, 0))
        x += panel.width + gap
    return out


def contact_sheet(rows: Sequence[tuple[str, Sequence[Image.Image]]], side: int = THUMB_SIDE, gap: int = 4) -> Image.Image:
    """One row of thumbnails per attention, its label on the left."""
    from PIL import Image, ImageDraw

    label_width = 150
    thumbs = [[_thumb(p, side) for p in panels] for _, panels in rows]
    height = sum(max(t.height for t in row) + gap for row in thumbs)
    width = label_width + max(sum(t.width + gap for t in row) for row in thumbs)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    y = 0
    for (label, _), row in zip(rows, thumbs):
        for line in range(3):  # the label wrapped over up to three lines of 22 characters
            draw.text((3, y + 4 + 12 * line), label[22 * line: 22 * (line + 1)], fill=(0, 0, 0))
        x = label_width
        for thumb in row:
            out.paste(thumb, (x, y))
            x += thumb.width + gap
        y += max(t.height for t in row) + gap
    return out


def _thumb(panel: Image.Image, side: int) -> Image.Image:
    from PIL import Image

    scale = side / max(panel.size)
    return panel.resize((max(1, round(panel.width * scale)), max(1, round(panel.height * scale))), Image.Resampling.LANCZOS)
