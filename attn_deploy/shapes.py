"""Input shapes as written on the command line: ``1x3x224x224``, ``NAME:SHAPE`` and ``[NAME:]SHAPE``."""

from __future__ import annotations

from collections.abc import Iterable

from attn_deploy.errors import InputError

Shape = tuple[int, ...]


def _dims(text: str) -> Shape | None:
    """``"1x3x8x8"`` -> ``(1, 3, 8, 8)``; None unless every dimension is a positive integer."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        return None
    return dims if dims and all(d > 0 for d in dims) else None


def parse_shape(text: str, option: str = "--input-shape") -> Shape:
    """``"1x3x224x224"`` -> ``(1, 3, 224, 224)``; InputError naming ``option`` on bad text."""
    dims = _dims(text)
    if dims is None:
        raise InputError(f"{option} {text!r} is not a shape like 1x3x224x224 (positive integers joined by x)")
    return dims


def parse_named_shapes(items: Iterable[str], option: str) -> dict[str, Shape]:
    """``["images:1x3x800x1088", ...]`` -> ``{"images": (1, 3, 800, 1088)}``; the name is required."""
    shapes: dict[str, Shape] = {}
    for item in items:
        name, sep, text = item.rpartition(":")
        dims = _dims(text)
        if not sep or not name or dims is None:
            raise InputError(f"{option} {item!r} is not NAME:SHAPE like images:1x3x800x1088")
        shapes[name] = dims
    return shapes


def parse_optional_named(items: Iterable[str], option: str = "--input-shape") -> dict[str, Shape]:
    """``["images:1x3x224x224", "1x3x8x8"]`` -> ``{"images": ..., "": ...}`` (``""``: the unnamed input)."""
    shapes: dict[str, Shape] = {}
    for item in items:
        name, _, text = item.rpartition(":")
        dims = _dims(text)
        if dims is None:
            raise InputError(f"{option} {item!r} is not [NAME:]SHAPE like images:1x3x224x224 or 1x3x224x224")
        shapes[name] = dims
    return shapes
