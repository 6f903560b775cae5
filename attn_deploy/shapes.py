"""Inputs as written on the command line: ``1x3x224x224``, ``NAME:SHAPE``, ``[NAME:]SHAPE`` and
``[NAME:]SHAPE[:DTYPE]`` (``--input``), or an ``.npz`` of example inputs."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn_deploy.errors import InputError, first_line

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


#: Input dtypes ``--input NAME:SHAPE:DTYPE`` accepts (NumPy names); ``float32`` when none is written.
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclass(frozen=True)
class InputDecl:
    """One model input as the user describes it: name (``""``: by position), shape and NumPy dtype
    (None: not given, the model's own where it records one (a ``.pt2``), else float32)."""

    name: str
    shape: Shape
    dtype: str | None = None


def parse_input(text: str, option: str = "--input") -> InputDecl:
    """``"input_ids:1x128:int64"`` -> ``InputDecl("input_ids", (1, 128), "int64")``; also ``[NAME:]SHAPE``."""
    head, sep, last = text.rpartition(":")
    dtype = last.lower() if sep and last.lower() in DTYPES else None
    body = head if dtype else text
    name, _, shape_text = body.rpartition(":")
    dims = _dims(shape_text)
    if dims is None:
        raise InputError(f"{option} {text!r} is not [NAME:]SHAPE[:DTYPE] like input_ids:1x128:int64 or 1x3x224x224 "
                         f"(DTYPE one of {', '.join(DTYPES)})")
    return InputDecl(name, dims, dtype)


def read_npz(path: Path) -> dict[str, Any]:
    """The arrays of an ``.npz`` by name (NumPy arrays of numbers); ``InputError`` for anything else."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable .npz file ({first_line(e)}); save arrays with numpy.savez") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # .npy content: one array
        raise InputError(f"{path} holds one array, not an .npz archive; save it with numpy.savez(path, NAME=array)")
    try:
        with loaded as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable .npz file ({first_line(e)}); save arrays with numpy.savez") from None
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise InputError(f"{path}: array {name!r} holds {array.dtype} values; the model takes numbers")
    return arrays


def npz_inputs(path: Path, option: str = "--input") -> list[InputDecl]:
    """One ``InputDecl`` per array of an ``.npz`` of example inputs, named, shaped and typed as the arrays are."""
    decls = []
    for name, array in read_npz(path).items():
        if array.dtype.name not in DTYPES or not array.shape or 0 in array.shape:
            raise InputError(f"{option} {path}: array {name!r} ({array.dtype}, shape {array.shape}) is not a model input "
                             f"(a non-empty array of {', '.join(DTYPES)})")
        decls.append(InputDecl(name, tuple(int(d) for d in array.shape), array.dtype.name))
    return decls


def parse_inputs(items: Iterable[str], option: str = "--input") -> list[InputDecl]:
    """Every ``--input``: ``[NAME:]SHAPE[:DTYPE]`` each, or an ``.npz`` whose arrays are the example inputs."""
    decls: list[InputDecl] = []
    for item in items:
        if item.lower().endswith(".npz"):
            path = Path(item)
            if not path.is_file():
                raise InputError(f"{option} {item}: no such .npz file")
            decls.extend(npz_inputs(path, option))
        else:
            decls.append(parse_input(item, option))
    names = [d.name for d in decls]
    if any(names) and not all(names):
        raise InputError(f"{option}: name every input or none (got {', '.join(n or '<unnamed>' for n in names)})")
    if len(set(names)) != len(names) and any(names):
        raise InputError(f"{option}: an input is described twice ({', '.join(names)})")
    return decls


def data_inputs(data: Path | None) -> list[InputDecl]:
    """The inputs an ``--data`` ``.npz`` describes (its arrays' names, shapes, dtypes); none for images or no data."""
    if data is None or data.suffix.lower() != ".npz" or not data.is_file():
        return []
    return npz_inputs(data, "--data")


def shape_overrides(decls: Iterable[InputDecl]) -> dict[str, Shape]:
    """``{name: shape}`` for ``input_specs``; a single input also under ``""`` (it fits a single-input model whatever its name)."""
    decls = list(decls)
    shapes = {d.name: d.shape for d in decls}
    if len(decls) == 1:
        shapes[""] = decls[0].shape
    return shapes
