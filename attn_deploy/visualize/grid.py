"""Where an attention's tokens lie on the model's input image, and back: query pixel <-> token.

An attention over an image works on a grid of ``h x w`` tokens, ``stride`` input pixels apart:
a SAGAN block on a feature map (N = h·w), one FPN level, ViT patches after ``extra`` leading
tokens (a class token: N = 1 + h·w), or windows of ``window x window`` tokens (Swin: the op's
batch axis holds batch·windows, each call attends within one window of N = window²).

The grid is ``known`` when the attention's module took an ``[B, C, h, w]`` feature map (recorded in
PyTorch); otherwise it is inferred from N, the number of windows and the input image's size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from attn_deploy.errors import InputError

#: Leading non-spatial tokens tried when inferring a grid (class, distillation, register tokens).
MAX_EXTRA_TOKENS = 4
#: Detectors pad their input to a multiple of this many pixels, so a grid may overhang the image by up to it.
PAD_MULTIPLE = 32


@dataclass(frozen=True)
class TokenGrid:
    """``h x w`` tokens (windows joined), ``stride_y/x`` input pixels apart, after ``extra`` leading tokens.

    ``window`` is the window side in tokens, 0 when the attention sees the whole grid.
    """

    h: int
    w: int
    stride_y: float
    stride_x: float
    extra: int = 0
    window: int = 0
    known: bool = False

    @property
    def windows(self) -> int:
        return (self.h // self.window) * (self.w // self.window) if self.window else 1

    @property
    def tokens(self) -> int:
        """Tokens per attention call (per window): N."""
        return self.extra + (self.window**2 if self.window else self.h * self.w)

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """The (row, col) of the token covering input pixel (x, y), clamped to the grid."""
        row = min(max(int(y // self.stride_y), 0), self.h - 1)
        col = min(max(int(x // self.stride_x), 0), self.w - 1)
        return row, col

    def token(self, x: float, y: float) -> tuple[int, int]:
        """(window, token) of input pixel (x, y): the window's index on the batch axis, the token's in the window."""
        row, col = self.cell(x, y)
        if not self.window:
            return 0, self.extra + row * self.w + col
        ws = self.window
        return (row // ws) * (self.w // ws) + col // ws, self.extra + (row % ws) * ws + col % ws

    def centre(self, window: int, token: int) -> tuple[float, float] | None:
        """The input pixel at the centre of ``token`` in ``window``; None for an extra (class) token."""
        index = token - self.extra
        if index < 0:
            return None
        if self.window:
            ws = self.window
            per_row = self.w // ws
            row = (window // per_row) * ws + index // ws
            col = (window % per_row) * ws + index % ws
        else:
            row, col = divmod(index, self.w)
        return ((col + 0.5) * self.stride_x, (row + 0.5) * self.stride_y)

    def layout(self, window: int, row: np.ndarray) -> np.ndarray:
        """One query's attention row (N keys, extra tokens first) as an ``[h, w]`` map; 0 outside its window."""
        spatial = np.asarray(row, np.float64)[self.extra:]
        if not self.window:
            return spatial.reshape(self.h, self.w)
        ws = self.window
        out = np.zeros((self.h, self.w))
        r0, c0 = (window // (self.w // ws)) * ws, (window % (self.w // ws)) * ws
        out[r0:r0 + ws, c0:c0 + ws] = spatial.reshape(ws, ws)
        return out

    def describe(self) -> str:
        """``25x34 tokens at stride 32`` (+ class token, windows, inferred)."""
        stride = f"{self.stride_y:g}" if self.stride_y == self.stride_x else f"{self.stride_y:g}x{self.stride_x:g}"
        text = f"{self.h}x{self.w} tokens at stride {stride}"
        if self.extra:
            text += f" after {self.extra} extra token{'s' if self.extra > 1 else ''}"
        if self.window:
            text += f", {self.windows} windows of {self.window}x{self.window}"
        return text + ("" if self.known else " (inferred from N and the image size)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenGrid:
        return cls(**data)


def _fits(tokens: int, pixels: int, stride: int) -> bool:
    """``tokens`` at ``stride`` cover ``pixels``: floor (valid conv), ceil (padded conv), or padded to PAD_MULTIPLE."""
    span = tokens * stride
    return pixels - stride < span <= pixels + max(stride, PAD_MULTIPLE) - 1


def _strides(h: int, w: int, image_h: int, image_w: int) -> tuple[float, float]:
    """The integer stride at which an ``h x w`` grid covers the image best, else the grid stretched over it."""
    best: tuple[int, int] | None = None
    for s in range(1, max(image_h, image_w) + 1):
        if _fits(h, image_h, s) and _fits(w, image_w, s):
            miss = abs(h * s - image_h) + abs(w * s - image_w)
            if best is None or miss < best[0]:
                best = (miss, s)
    if best is not None:
        return float(best[1]), float(best[1])
    return image_h / h, image_w / w


def known_grid(feature_hw: tuple[int, int], image_hw: tuple[int, int], tokens: int) -> TokenGrid | None:
    """The grid of an attention whose module took an ``h x w`` feature map, if its N tokens are those."""
    h, w = feature_hw
    if h * w != tokens:
        return None
    sy, sx = _strides(h, w, *image_hw)
    return TokenGrid(h, w, sy, sx, known=True)


def _candidates(pixels: int, stride: int) -> set[int]:
    padded = math.ceil(pixels / PAD_MULTIPLE) * PAD_MULTIPLE
    return {pixels // stride, math.ceil(pixels / stride), math.ceil(padded / stride)} - {0}


def infer_grid(tokens: int, image_hw: tuple[int, int], windows: int = 1) -> TokenGrid:
    """The grid N = ``tokens`` per call most likely lies on, for an input image of ``image_hw``.

    Tries 0..MAX_EXTRA_TOKENS leading tokens and every integer stride; with ``windows`` > 1 (the
    op's batch axis is batch·windows) the tokens are square windows tiling the grid.
    ``InputError`` when nothing fits.
    """
    image_h, image_w = image_hw
    for extra in range(MAX_EXTRA_TOKENS + 1):
        spatial = tokens - extra
        if spatial <= 0:
            break
        ws = math.isqrt(spatial) if windows > 1 else 0
        if windows > 1 and (extra or ws * ws != spatial):
            continue
        found: list[tuple[int, int, int, int]] = []  # (miss, stride, h, w): the grid covering the image most exactly wins
        for s in range(1, max(image_h, image_w) + 1):
            for h in sorted(_candidates(image_h, s)):
                for w in sorted(_candidates(image_w, s)):
                    if ws:
                        h, w = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
                        if (h // ws) * (w // ws) != windows:
                            continue
                    elif h * w != spatial:
                        continue
                    found.append((abs(h * s - image_h) + abs(w * s - image_w), s, h, w))
        if found:
            _, s, h, w = min(found)
            return TokenGrid(h, w, float(s), float(s), extra=extra, window=ws)
    where = f" in {windows} windows" if windows > 1 else ""
    raise InputError(f"cannot place {tokens} tokens{where} on a {image_h}x{image_w} image as a grid; "
                     "choose the attentions over the image with --node")
