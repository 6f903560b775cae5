"""Which query tokens to show: the pixels asked for (``--query x,y``), or the attention's salient points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attn_deploy.visualize.grid import TokenGrid


@dataclass(frozen=True)
class Query:
    """One query row: its label, the op's batch index (batch·windows) and token, and the model-input pixel
    it stands for (the ``--query`` point, or the token's centre; None for a class token)."""

    label: str
    window: int
    token: int
    pixel: tuple[float, float] | None


def pixel_queries(grid: TokenGrid, points: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[Query]:
    """The tokens under ``points`` (model-input pixels)."""
    return [Query(label, *grid.token(x, y), (x, y)) for (x, y), label in zip(points, labels)]


def salient_queries(grid: TokenGrid, norms: np.ndarray, count: int, image_hw: tuple[int, int]) -> list[Query]:
    """Up to ``count`` tokens where the attention output's norm (``[B, Nq]``) peaks, spread over the grid
    and centred on the ``image_hw`` input (not on a detector's padding), then the first extra (class) token."""
    heat = sum(grid.layout(w, norms[w]) for w in range(grid.windows))
    assert isinstance(heat, np.ndarray)
    gap = max(1, min(grid.h, grid.w) // 4)
    chosen: list[tuple[int, int]] = []
    for flat in np.argsort(-heat, axis=None, kind="stable"):
        r, c = divmod(int(flat), grid.w)
        if (r + 0.5) * grid.stride_y >= image_hw[0] or (c + 0.5) * grid.stride_x >= image_hw[1]:
            continue
        if all(max(abs(r - r0), abs(c - c0)) >= gap for r0, c0 in chosen):
            chosen.append((r, c))
        if len(chosen) == count:
            break
    queries = []
    for n, (r, c) in enumerate(chosen, 1):
        centre = ((c + 0.5) * grid.stride_x, (r + 0.5) * grid.stride_y)
        queries.append(Query(f"salient {n}", *grid.token(*centre), centre))
    if grid.extra:
        queries.append(Query("class token", 0, 0, None))
    return queries


def top_queries(norms: np.ndarray, count: int) -> list[Query]:
    """For queries not on the image (cross-attention from object queries): the ``count`` with the largest output."""
    order = np.argsort(-norms[0], kind="stable")[:count]
    return [Query(f"query #{int(t)}", 0, int(t), None) for t in order]
