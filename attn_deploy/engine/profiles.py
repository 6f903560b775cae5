"""Optimisation profiles: explicit ``--shapes`` / ``--min/--opt/--max-shapes``, else from the manifest.

A profile gives every network input a (min, opt, max) shape. Static inputs get their own shape.
Dynamic axes default from the export manifest (``OUT.json`` beside the model): opt is the shape the
model was exported with, min is 1 on axis 0 and half the export size on other axes, max is twice
the export size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx

from attn_deploy.artifact.graph import Dim, dims_of, graph_inputs
from attn_deploy.artifact.manifest import Manifest
from attn_deploy.errors import InputError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class InputProfile:
    name: str
    min: Shape
    opt: Shape
    max: Shape

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_named_shapes(items: list[str] | tuple[str, ...], option: str) -> dict[str, Shape]:
    """``["images:1x3x800x1088", ...]`` -> ``{"images": (1, 3, 800, 1088)}``; InputError on bad text."""
    shapes: dict[str, Shape] = {}
    for item in items:
        name, sep, text = item.rpartition(":")
        try:
            dims = tuple(int(d) for d in text.lower().split("x"))
        except ValueError:
            dims = ()
        if not sep or not name or not dims or any(d <= 0 for d in dims):
            raise InputError(f"{option} {item!r} is not NAME:SHAPE like images:1x3x800x1088")
        shapes[name] = dims
    return shapes


def model_inputs(model: onnx.ModelProto) -> dict[str, list[Dim]]:
    """Graph inputs that are not initializers, with their dims (int, symbol or None)."""
    return {vi.name: dims_of(vi.type) or [] for vi in graph_inputs(model)}


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _check_fits(name: str, dims: list[Dim], shape: Shape, option: str) -> None:
    if len(shape) != len(dims):
        raise InputError(f"{option} {name}:{_fmt(shape)} has rank {len(shape)}, but input {name!r} has rank {len(dims)}")
    for axis, (want, got) in enumerate(zip(dims, shape)):
        if isinstance(want, int) and want > 0 and want != got:
            raise InputError(f"{option} {name}:{_fmt(shape)}: axis {axis} of {name!r} is fixed at {want}")


def _export_shapes(manifest: Manifest | Mapping[str, Any] | None) -> list[list[Dim]]:
    if isinstance(manifest, Manifest):
        return manifest.export_input_shapes
    return list((manifest or {}).get("export_input_shapes") or [])


def _from_manifest(name: str, dims: list[Dim], export_shapes: list[list[Dim]], index: int) -> InputProfile:
    dynamic = [a for a, d in enumerate(dims) if not (isinstance(d, int) and d > 0)]
    if not dynamic:
        shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]
        return InputProfile(name, shape, shape, shape)
    if index >= len(export_shapes) or len(export_shapes[index]) != len(dims):
        raise InputError(
            f"input {name!r} has dynamic axes {dynamic} and no manifest gives its export shape; "
            f"pass --shapes {name}:SHAPE or --min-shapes/--opt-shapes/--max-shapes {name}:SHAPE"
        )
    if not all(isinstance(d, int) for d in export_shapes[index]):
        raise InputError(f"input {name!r}: the manifest's export shape {export_shapes[index]} is not static; pass --shapes {name}:SHAPE")
    opt = tuple(int(d) for d in export_shapes[index])  # type: ignore[arg-type]
    low = tuple(1 if a == 0 else max(1, opt[a] // 2) if a in dynamic else opt[a] for a in range(len(opt)))
    high = tuple(opt[a] * 2 if a in dynamic else opt[a] for a in range(len(opt)))
    return InputProfile(name, low, opt, high)


def resolve_profile(
    model: onnx.ModelProto,
    manifest: Manifest | Mapping[str, Any] | None,
    *,
    shapes: Mapping[str, Shape],
    min_shapes: Mapping[str, Shape],
    opt_shapes: Mapping[str, Shape],
    max_shapes: Mapping[str, Shape],
) -> list[InputProfile]:
    """One (min, opt, max) per model input; InputError names the option to fix.

    Dynamic axes without an option come from ``manifest``'s ``export_input_shapes``.
    """
    inputs = model_inputs(model)
    export_shapes = _export_shapes(manifest)
    for option, given in (("--shapes", shapes), ("--min-shapes", min_shapes), ("--opt-shapes", opt_shapes), ("--max-shapes", max_shapes)):
        for name, shape in given.items():
            if name not in inputs:
                raise InputError(f"{option} names {name!r}, but the model's inputs are {', '.join(inputs)}")
            _check_fits(name, inputs[name], shape, option)
    profiles = []
    for index, (name, dims) in enumerate(inputs.items()):
        ranged = [m.get(name) for m in (min_shapes, opt_shapes, max_shapes)]
        if name in shapes:
            if any(ranged):
                raise InputError(f"input {name!r} is in --shapes and in --min/--opt/--max-shapes; give one or the other")
            profiles.append(InputProfile(name, shapes[name], shapes[name], shapes[name]))
            continue
        if any(ranged):
            if not all(ranged):
                raise InputError(f"input {name!r}: give all of --min-shapes, --opt-shapes and --max-shapes for it")
            low, opt, high = (shape or () for shape in ranged)
            if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
                raise InputError(f"input {name!r}: need min <= opt <= max on every axis, got {_fmt(low)}, {_fmt(opt)}, {_fmt(high)}")
            profiles.append(InputProfile(name, low, opt, high))
            continue
        profiles.append(_from_manifest(name, dims, export_shapes, index))
    return profiles


def outside_profile(profile: InputProfile, shape: Shape) -> bool:
    return len(shape) != len(profile.min) or any(not (lo <= s <= hi) for s, lo, hi in zip(shape, profile.min, profile.max))


def describe(profile: InputProfile) -> str:
    if profile.is_static:
        return _fmt(profile.opt)
    return f"min {_fmt(profile.min)}, opt {_fmt(profile.opt)}, max {_fmt(profile.max)}"
