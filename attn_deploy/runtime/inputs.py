"""Inputs for check, bench, quantize's parity and export's tracing: random (token ids in range, masks of
ones, images in [0, 1]), an .npz, or real images resized and normalised per the manifest.

Shapes come from an Artifact in memory (its graph and manifest): nothing here reads a model file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.graph import dims_of, dims_product, dtype_name, graph_inputs
from attn_deploy.errors import InputError, first_line
from attn_deploy.runtime.base import Feeds
from attn_deploy.shapes import data_inputs, read_npz, shape_overrides

Preprocess = Mapping[str, Any]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    #: Integer inputs: values are drawn below this (an embedding table's rows); None: unknown.
    high: int | None = None


#: Ops a token-id input may pass through on its way to its embedding's Gather.
_INDEX_PASSTHROUGH = frozenset({"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand"})


def token_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """``{input: rows}`` for each integer graph input that indexes a constant table (an embedding) through Gather.

    An integer input not traced to its own table gets the first Gather table's row count (the
    token embedding, in a language model); masks and bool inputs get none.
    """
    tables = {t.name: int(t.dims[0]) for t in model.graph.initializer if len(t.dims) == 2}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    first = next((tables[n.input[0]] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in tables), None)
    bounds: dict[str, int] = {}
    for vi in graph_inputs(model):
        kind = np.dtype(dtype_name(vi.type.tensor_type.elem_type) or "float32").kind
        if kind not in "iu" or "mask" in vi.name.lower():
            continue
        frontier, seen = [vi.name], set()
        while frontier and vi.name not in bounds:
            value = frontier.pop(0)
            for node in consumers.get(value, []):
                if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == value and node.input[0] in tables:
                    bounds[vi.name] = tables[node.input[0]]
                    break
                if node.op_type in _INDEX_PASSTHROUGH and node.input[0] == value and node.output[0] not in seen:
                    seen.add(node.output[0])
                    frontier.append(node.output[0])
        if vi.name not in bounds and first is not None:
            bounds[vi.name] = first
    return bounds


def input_specs(artifact: Artifact, overrides: Mapping[str, tuple[int, ...]] | None = None) -> list[InputSpec]:
    """Concrete input shapes: ``--input-shape`` overrides, else static dims, else the manifest's export shapes."""
    export_shapes = artifact.manifest.export_input_shapes
    overrides = overrides or {}
    specs = []
    inputs = graph_inputs(artifact.proto)
    bounds = token_bounds(artifact.proto)
    for idx, vi in enumerate(inputs):
        dims = dims_of(vi.type) or []
        if vi.name in overrides or (len(inputs) == 1 and "" in overrides):
            shape = overrides.get(vi.name) or overrides[""]
            if len(shape) != len(dims):
                raise InputError(f"--input-shape for {vi.name!r} has rank {len(shape)}, the model's input has rank {len(dims)}")
        elif dims_product(dims) is not None:
            shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]  # dims_product checked they are ints
        elif idx < len(export_shapes) and dims_product(export_shapes[idx]) is not None:
            shape = tuple(int(d) for d in export_shapes[idx])  # type: ignore[arg-type]
        else:
            raise InputError(f"input {vi.name!r} has dynamic dims {dims}; pass --input {vi.name}:{'x'.join(str(d) if isinstance(d, int) else '1' for d in dims)}")
        dtype = dtype_name(vi.type.tensor_type.elem_type) or "float32"
        specs.append(InputSpec(vi.name, tuple(int(d) for d in shape), np.dtype(dtype), bounds.get(vi.name)))
    return specs


def is_image(spec: InputSpec) -> bool:
    """A float NCHW input with 3 channels: a batch of RGB images."""
    return spec.dtype.kind == "f" and len(spec.shape) == 4 and spec.shape[1] == 3


def is_mask(spec: InputSpec) -> bool:
    """A bool input, or one whose name says it is a mask (``attention_mask``): fed ones, every position kept."""
    return spec.dtype.kind == "b" or "mask" in spec.name.lower()


def _float_range(spec: InputSpec, val_range: tuple[float, float] | None, preprocess: Preprocess | None) -> tuple[float, float] | None:
    if val_range is not None:
        return val_range
    if preprocess:
        if preprocess.get("mean") is None:  # a model taking raw images, in its own range
            low, high = preprocess.get("range", (0.0, 1.0))
            return float(low), float(high)
        return None  # normalised images: N(0, 1) is their scale
    return (0.0, 1.0) if is_image(spec) else None


def random_feeds(
    specs: list[InputSpec], seed: int, val_range: tuple[float, float] | None, preprocess: Preprocess | None, vocab: int | None = None
) -> Feeds:
    """Random inputs: masks (``is_mask``) all ones; other integers token ids below ``vocab``, else below
    the spec's ``high`` (its embedding's rows), else 0/1; floats uniform in ``val_range`` if given, in
    the manifest's range for raw-image models, in [0, 1] for a 3-channel NCHW input, else N(0, 1)."""
    if seed < 0:
        raise InputError(f"--seed {seed}: the seed must be a non-negative integer")
    if vocab is not None and vocab < 1:
        raise InputError(f"--vocab {vocab}: the vocabulary size must be a positive integer")
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        if is_mask(spec):
            feeds[spec.name] = np.ones(spec.shape, spec.dtype)
            continue
        if spec.dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, vocab or spec.high or 2, spec.shape).astype(spec.dtype)
            continue
        span = _float_range(spec, val_range, preprocess)
        data = rng.uniform(span[0], span[1], spec.shape) if span is not None else rng.standard_normal(spec.shape)
        feeds[spec.name] = data.astype(spec.dtype)
    return feeds


def npz_feeds(path: Path, specs: list[InputSpec]) -> Feeds:
    """The arrays of an .npz named like the inputs (a single array feeds a single input)."""
    return _checked_feeds(path, read_npz(path), specs)


def npy_feeds(path: Path, specs: list[InputSpec]) -> Feeds:
    """The array of a .npy file, for a model with one input."""
    if len(specs) != 1:
        raise InputError(f"{path} holds one array and the model takes {len(specs)} inputs; save them with numpy.savez(path, NAME=array, ...)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path} is not a readable .npy file ({first_line(e)}); save the array with numpy.save") from None
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise InputError(f"{path} is an .npz archive, not a .npy array; name it .npz")
    return _checked_feeds(path, {specs[0].name: loaded}, specs)


def _checked_feeds(path: Path, arrays: dict[str, np.ndarray], specs: list[InputSpec]) -> Feeds:
    """``arrays`` as the inputs ``specs`` name: numbers of the expected shapes, in the inputs' dtypes."""
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise InputError(f"{path}: array {name!r} holds {array.dtype} values; the model takes numbers")
    if len(arrays) == 1 and len(specs) == 1 and specs[0].name not in arrays:
        arrays = {specs[0].name: next(iter(arrays.values()))}
    feeds = {}
    for spec in specs:
        if spec.name not in arrays:
            raise InputError(f"{path} has no array named {spec.name!r} (it has {sorted(arrays)})")
        array = arrays[spec.name]
        if tuple(array.shape) != spec.shape:
            raise InputError(f"{path}: {spec.name!r} has shape {array.shape}, the model expects {spec.shape}")
        feeds[spec.name] = array.astype(spec.dtype)
    return feeds


def _image_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    return [path]


def image_feeds(path: Path, specs: list[InputSpec], preprocess: Preprocess | None) -> list[Feeds]:
    """One sample per image: RGB, resized to the input's H x W, scaled to [0, 1], normalised by mean/std."""
    from PIL import Image, UnidentifiedImageError

    if len(specs) != 1 or len(specs[0].shape) != 4 or specs[0].shape[1] != 3:
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
        raise InputError(f"images need one NCHW input with 3 channels; this model takes {shapes}: use --data FILE.npz")
    spec = specs[0]
    batch, _, height, width = spec.shape
    mean = np.asarray((preprocess or {}).get("mean") or [0.0, 0.0, 0.0], np.float32).reshape(3, 1, 1)
    std = np.asarray((preprocess or {}).get("std") or [1.0, 1.0, 1.0], np.float32).reshape(3, 1, 1)
    samples = []
    for file in _image_files(path):
        try:
            with Image.open(file) as img:
                rgb = img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{file} is not a readable image ({e})") from None
        chw = np.asarray(rgb, np.float32).transpose(2, 0, 1) / 255.0
        chw = (chw - mean) / std
        samples.append({spec.name: np.repeat(chw[None], batch, axis=0).astype(spec.dtype)})
    return samples


def _must_exist(data: Path) -> None:
    if not data.exists():
        why = "is a broken symbolic link or a symbolic link loop" if data.is_symlink() else ": no such file or folder"
        raise InputError(f"--data {data}{'' if why.startswith(':') else ' '}{why}")


def load_samples(
    data: Path | None,
    specs: list[InputSpec],
    *,
    seed: int = 0,
    val_range: tuple[float, float] | None = None,
    preprocess: Preprocess | None = None,
    allow_nonfinite: bool = False,
    vocab: int | None = None,
) -> list[Feeds]:
    """The samples to run: random (one), an .npz or .npy (one), or an image file/folder (one per image).

    NaN or Inf in ``data`` is an ``InputError`` unless ``allow_nonfinite``: a parity failure on
    them would say nothing about the model.
    """
    if data is None:
        return [random_feeds(specs, seed, val_range, preprocess, vocab)]
    _must_exist(data)
    if data.suffix == ".npz":
        samples = [npz_feeds(data, specs)]
    elif data.suffix == ".npy":
        samples = [npy_feeds(data, specs)]
    else:
        samples = image_feeds(data, specs, preprocess)
    if not allow_nonfinite:
        for sample in samples:
            for name, array in sample.items():
                bad = int(array.size - np.count_nonzero(np.isfinite(array))) if array.dtype.kind in "fc" else 0
                if bad:
                    raise InputError(f"--data {data}: input {name!r} has {bad} NaN/Inf value(s); fix the data or pass --allow-nonfinite")
    return samples


def artifact_feeds(
    artifact: Artifact,
    overrides: Mapping[str, tuple[int, ...]] | None = None,
    *,
    data: Path | None = None,
    seed: int = 0,
    val_range: tuple[float, float] | None = None,
    vocab: int | None = None,
    allow_nonfinite: bool = False,
) -> Feeds:
    """One sample for ``artifact`` as ``check`` makes it (``load_samples``; the first of an image folder).

    Dynamic dimensions take ``overrides``, else the shapes of the arrays in a ``data`` .npz.
    """
    if data is not None:
        _must_exist(data)
    specs = input_specs(artifact, overrides or shape_overrides(data_inputs(data)))
    return load_samples(data, specs, seed=seed, val_range=val_range, preprocess=artifact.manifest.preprocess,
                        allow_nonfinite=allow_nonfinite, vocab=vocab)[0]
