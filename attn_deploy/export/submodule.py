"""``export --submodule NAME``: export one named part of a model (e.g. a detector's backbone).

Used where the whole graph has an op a backend lacks (a detector's NMS and ROI heads) but the
part with the attention does not. Paths are ``nn.Module.get_submodule`` names; for the zoo's
detectors (``DetectorOutputs``) ``backbone`` also finds ``detector.backbone``. The part's outputs
are flattened to a tuple (the FPN's OrderedDict becomes one output per level, named by its key).
A torchvision detector's backbone gets the input the detector's transform would give it: the
default image resized to an 800-pixel shorter side and padded to a multiple of 32 (1x3x800x1088
for an 800x1066 image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attn_deploy.errors import InputError, first_line
from attn_deploy.export.loading import LoadedModel
from attn_deploy.zoo.detection import DetectorOutputs
from attn_deploy.zoo.registry import Shape


def _flatten(value: Any, prefix: str) -> list[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        return [(prefix, value)]
    if isinstance(value, Mapping):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}_{k}")]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [item for i, v in enumerate(value) for item in _flatten(v, f"{prefix}_{i}")]
    return []


class FlatOutputs(nn.Module):
    """``inner``'s tensor outputs as a flat tuple, in the order :func:`_flatten` names them."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        return tuple(t for _, t in _flatten(self.inner(*args), "out"))


def resolve_submodule(root: nn.Module, path: str, source: str) -> tuple[str, nn.Module]:
    """``(qualified name, module)`` for ``path``; InputError listing what exists otherwise."""
    candidates = [path]
    if isinstance(root, DetectorOutputs) and not path.startswith("detector."):
        candidates.append(f"detector.{path}")
    for name in candidates:
        try:
            return name, root.get_submodule(name)
        except AttributeError:
            continue
    top = root.detector if isinstance(root, DetectorOutputs) else root
    children = ", ".join(n for n, _ in top.named_children()) or "none"
    raise InputError(f"{source} has no submodule {path!r}; its parts are: {children} (nest with dots, e.g. backbone.body)")


def _detector_input_shape(root: DetectorOutputs, loaded: LoadedModel) -> Shape:
    image = loaded.example_inputs(loaded.input_shapes)[0][0]
    with torch.no_grad():
        images, _ = root.detector.transform([image])  # type: ignore[operator]
    return tuple(int(d) for d in images.tensors.shape)


def select_submodule(loaded: LoadedModel, path: str, shapes: tuple[Shape, ...] = ()) -> LoadedModel:
    """A LoadedModel for the part of ``loaded`` at ``path``, with its input shape and output names."""
    name, part = resolve_submodule(loaded.module, path, loaded.source)
    root = loaded.module
    if not shapes and isinstance(root, DetectorOutputs) and name in ("detector.backbone", "detector.backbone.body"):
        shapes = (_detector_input_shape(root, loaded),)
    if not shapes:
        raise InputError(f"no input shape known for submodule {name!r} of {loaded.source}; pass --input-shape")
    short = name.rsplit(".", 1)[-1]
    inputs = tuple(torch.randn(s, generator=torch.Generator().manual_seed(0)) for s in shapes)
    try:
        with torch.no_grad():
            flat = _flatten(part(*inputs), short)
    except Exception as e:  # noqa: BLE001 - any failure here is about the input shape we chose
        first = first_line(e)
        raise InputError(f"submodule {name!r} rejected input {', '.join('x'.join(map(str, s)) for s in shapes)}: {first}; fix --input-shape") from None
    if not flat:
        raise InputError(f"submodule {name!r} returns no tensors; pick a part that returns tensors")
    return LoadedModel(
        module=FlatOutputs(part).eval(),
        source=f"{loaded.source}#{name}",
        input_shapes=shapes,
        input_names=("input",),
        output_names=tuple(n for n, _ in flat),
        preferred_exporter="dynamo",
        source_sha256=loaded.source_sha256,
    )
