"""Recognise a detector by what it returns, not by what its outputs are called.

A torchvision detector returns a list with one ``{"boxes", "labels", "scores"}`` dict per image;
exporters flatten that to tensor outputs (dict values in order) whose names say nothing (TorchScript
names them ``2610``, ``2580``, ...). ``detection_layout`` finds, in an eager output, which flat
positions hold the first image's boxes, scores and labels; export records them in the manifest by
graph output name, so ``check`` and ``quantize`` match detections whatever the outputs are called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx
from torch import Tensor, nn

from attn_deploy.check.detection import DETECTION_OUTPUTS


@dataclass(frozen=True)
class DetectionLayout:
    """How many tensors the model returns, flattened, and the flat position of each detection role."""

    count: int
    roles: dict[str, int]

    def output_names(self, given: Sequence[str]) -> tuple[str, ...]:
        """``given`` names, else one per flat output: the role where there is one (``boxes``), else ``output_I``."""
        if given:
            return tuple(given)
        by_position = {i: role for role, i in self.roles.items()}
        return tuple(by_position.get(i, f"output_{i}") for i in range(self.count))

    def by_name(self, model: onnx.ModelProto) -> dict[str, str] | None:
        """``{role: graph output name}``; None when the graph's outputs are not the flat tensors counted here."""
        outputs = [o.name for o in model.graph.output]
        if len(outputs) != self.count:
            return None
        return {role: outputs[i] for role, i in self.roles.items()}


def _leaves(value: object, start: int, dicts: list[tuple[int, Mapping[str, object]]]) -> int:
    """Count the tensors in ``value`` as exporters flatten it; note each dict and where its tensors start."""
    if isinstance(value, Tensor):
        return 1
    count = 0
    if isinstance(value, Mapping):
        dicts.append((start, value))
        items: Sequence[object] = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return 0
    for item in items:
        count += _leaves(item, start + count, dicts)
    return count


def detection_layout(outputs: object) -> DetectionLayout | None:
    """The layout of a detector's output (a dict, or a list of dicts, with tensor boxes, scores and labels); else None."""
    dicts: list[tuple[int, Mapping[str, object]]] = []
    count = _leaves(outputs, 0, dicts)
    for start, d in dicts:
        if all(isinstance(d.get(role), Tensor) for role in DETECTION_OUTPUTS):
            positions: dict[str, int] = {}
            offset = start
            for key, value in d.items():
                if key in DETECTION_OUTPUTS:
                    positions[key] = offset
                offset += _leaves(value, offset, [])
            box = d["boxes"]
            if isinstance(box, Tensor) and box.dim() == 2 and box.shape[-1] == 4:
                return DetectionLayout(count, {role: positions[role] for role in DETECTION_OUTPUTS})
    return None


#: Attribute names a detector's selection goes by: torchvision's first, then common hand-written ones.
_THRESHOLD_NAMES = ("score_thresh", "score_threshold", "conf_thres", "conf_threshold")
_LIMIT_NAMES = ("detections_per_img", "max_det", "max_detections", "top_k")


def detection_selection(module: nn.Module) -> dict[str, object] | None:
    """What the detector keeps, read from the first module (in ``named_modules`` order) with both a
    score threshold and a detection limit by a known name (torchvision: ``roi_heads.score_thresh``
    and ``detections_per_img``), else the first with either (a missing threshold is 0); None when
    no module has one. Both first: torchvision's region proposals carry a ``score_thresh`` of their own."""
    found: list[dict[str, object]] = []
    for where, sub in module.named_modules():
        threshold = next((getattr(sub, n) for n in _THRESHOLD_NAMES if isinstance(getattr(sub, n, None), float)), None)
        limit = next((getattr(sub, n) for n in _LIMIT_NAMES
                      if isinstance(getattr(sub, n, None), int) and not isinstance(getattr(sub, n), bool)), None)
        if threshold is not None or limit is not None:
            found.append({"score_threshold": float(threshold or 0.0), "max_detections": limit, "found": where or "(the model)"})
    both = [f for f in found if f["max_detections"] is not None and f["score_threshold"]]
    return (both or found)[0] if found else None
