"""Detection-aware comparison: boxes, scores and labels of possibly different lengths.

Raw element-wise comparison of detector outputs is meaningless once one backend keeps a box the
other drops: everything after it shifts. Instead, reference detections are matched greedily, in
descending reference score, to unmatched candidate detections of the same class with the highest
IoU at or above a threshold. Which outputs hold boxes, scores and labels is recorded in the
manifest at export (a user's torchvision detector's outputs have numeric names), else read from
outputs named ``boxes``, ``scores`` and ``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from attn_deploy import defaults

DETECTION_OUTPUTS = ("boxes", "scores", "labels")


@dataclass(frozen=True)
class DetectionThresholds:
    """When a candidate's detections match the reference's (``check``'s defaults)."""

    iou: float = defaults.DETECTION_IOU
    #: matched / max(reference count, candidate count): extra candidate boxes count against it too.
    min_matched: float = defaults.DETECTION_MIN_MATCHED
    max_score_error: float = defaults.DETECTION_MAX_SCORE_ERROR


@dataclass(frozen=True)
class DetectionResult:
    """Counts, IoU and score errors of the matched detections, and the verdict under ``thresholds``."""

    reference_count: int
    candidate_count: int
    matched: int
    matched_fraction: float
    mean_iou: float
    min_iou: float
    max_score_error: float
    mean_score_error: float
    thresholds: DetectionThresholds
    passed: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


#: A detector's outputs by role: ``{"boxes": output name, "scores": ..., "labels": ...}``.
Roles = Mapping[str, str]


def detection_roles(names: Sequence[str], recorded: Roles | None = None) -> dict[str, str] | None:
    """Which of ``names`` are boxes, scores and labels: as the manifest ``recorded`` them at export,
    else the outputs named so; None when the model is not a detector."""
    if recorded and all(recorded.get(role) in names for role in DETECTION_OUTPUTS):
        return {role: recorded[role] for role in DETECTION_OUTPUTS}
    return {role: role for role in DETECTION_OUTPUTS} if all(n in names for n in DETECTION_OUTPUTS) else None


def is_detection_output(names: list[str]) -> bool:
    return detection_roles(names) is not None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a [N,4]`` with every box in ``b [M,4]`` (x1, y1, x2, y2)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_detections(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    thresholds: DetectionThresholds = DetectionThresholds(),
    roles: Roles | None = None,
) -> DetectionResult:
    """Match ``candidate``'s detections to ``reference``'s; ``roles`` names their boxes/scores/labels outputs."""
    names = [roles[k] if roles else k for k in DETECTION_OUTPUTS]
    rb, rs, rl = (np.asarray(reference[n]) for n in names)
    cb, cs, cl = (np.asarray(candidate[n]) for n in names)
    n_ref, n_cand = len(rb), len(cb)
    if n_ref == 0 and n_cand == 0:
        return DetectionResult(0, 0, 0, 1.0, 1.0, 1.0, 0.0, 0.0, thresholds, True)
    iou = box_iou(rb.reshape(-1, 4), cb.reshape(-1, 4)) if n_ref and n_cand else np.zeros((n_ref, n_cand))
    iou = np.where(rl.reshape(-1, 1) == cl.reshape(1, -1), iou, -1.0)
    taken = np.zeros(n_cand, dtype=bool)
    ious: list[float] = []
    score_errors: list[float] = []
    for i in np.argsort(-rs, kind="stable"):
        if n_cand == 0:
            break
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= thresholds.iou:
            taken[j] = True
            ious.append(float(row[j]))
            score_errors.append(abs(float(rs[i]) - float(cs[j])))
    matched = len(ious)
    fraction = matched / max(n_ref, n_cand)
    max_err = max(score_errors, default=0.0)
    return DetectionResult(
        reference_count=n_ref,
        candidate_count=n_cand,
        matched=matched,
        matched_fraction=fraction,
        mean_iou=float(np.mean(ious)) if ious else 0.0,
        min_iou=min(ious, default=0.0),
        max_score_error=max_err,
        mean_score_error=float(np.mean(score_errors)) if score_errors else 0.0,
        thresholds=thresholds,
        passed=fraction >= thresholds.min_matched and max_err <= thresholds.max_score_error,
    )
