"""Inputs for check and bench: random, an .npz, or real images resized and normalised per the manifest.

Shapes come from an Artifact in memory (its graph and manifest): nothing here reads a model file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.graph import dims_of, dims_product, dtype_name, graph_inputs
from attn_deploy.errors import InputError, first_line
from attn_deploy.runtime.base import Feeds

Preprocess = Mapping[str, Any]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def input_specs(artifact: Artifact, overrides: Mapping[str, tuple[int, ...]] | None = None) -> list[InputSpec]:
    """Concrete input shapes: ``--input-shape`` overrides, else static dims, else the manifest's export shapes."""
    export_shapes = artifact.manifest.export_input_shapes
    overrides = overrides or {}
    specs = []
    inputs = graph_inputs(artifact.proto)
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
            raise InputError(f"input {vi.name!r} has dynamic dims {dims}; pass --input-shape {vi.name}:1x3x224x224")
        dtype = dtype_name(vi.type.tensor_type.elem_type) or "float32"
        specs.append(InputSpec(vi.name, tuple(int(d) for d in shape), np.dtype(dtype)))
    return specs


def random_feeds(specs: list[InputSpec], seed: int, val_range: tuple[float, float] | None, preprocess: Preprocess | None) -> Feeds:
    """Uniform in ``val_range`` if given; images in [0, 1] for models that take raw images; else N(0, 1)."""
    if seed < 0:
        raise InputError(f"--seed {seed}: the seed must be a non-negative integer")
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        if spec.dtype.kind in "iub":
            feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(spec.dtype)
            continue
        if val_range is None and preprocess and preprocess.get("mean") is None:
            low, high = preprocess.get("range", (0.0, 1.0))
            val_range = (float(low), float(high))
        if val_range is not None:
            data = rng.uniform(val_range[0], val_range[1], spec.shape)
        else:
            data = rng.standard_normal(spec.shape)
        feeds[spec.name] = data.astype(spec.dtype)
    return feeds


def npz_feeds(path: Path, specs: list[InputSpec]) -> Feeds:
    """The arrays of an .npz named like the inputs (a single array feeds a single input)."""
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
    return _checked_feeds(path, arrays, specs)


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


def load_samples(
    data: Path | None,
    specs: list[InputSpec],
    *,
    seed: int = 0,
    val_range: tuple[float, float] | None = None,
    preprocess: Preprocess | None = None,
    allow_nonfinite: bool = False,
) -> list[Feeds]:
    """The samples to run: random (one), an .npz or .npy (one), or an image file/folder (one per image).

    NaN or Inf in ``data`` is an ``InputError`` unless ``allow_nonfinite``: a parity failure on
    them would say nothing about the model.
    """
    if data is None:
        return [random_feeds(specs, seed, val_range, preprocess)]
    if not data.exists():
        why = "is a broken symbolic link or a symbolic link loop" if data.is_symlink() else ": no such file or folder"
        raise InputError(f"--data {data}{'' if why.startswith(':') else ' '}{why}")
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
