"""Detection-aware comparison: boxes, scores and labels of possibly different lengths.

Raw element-wise comparison of detector outputs is meaningless once one backend keeps a box the
other drops: everything after it shifts. Instead, reference and candidate detections of the same
class are paired one to one at IoU at or above a threshold: as many pairs as possible (an optimal
assignment, so a crowd of overlapping boxes does not lose pairs to a greedy first choice), then the
highest total IoU. Which outputs hold boxes, scores and labels is recorded in the manifest at
export (a user's torchvision detector's outputs have numeric names), else read from outputs named
``boxes``, ``scores`` and ``labels``.

A detector keeps only detections scoring at or above its threshold, and only its best
``max_detections``. A detection scoring within the allowed score error of where the other side cut
may be missing there without any score moving more than allowed, so, when the detector's selection
is known (``DetectionSelection``, recorded at export from torchvision's ``score_thresh`` and
``detections_per_img``), such an unmatched detection is *borderline*: reported, not counted. If
nothing matched and every unmatched detection is borderline, all are counted: a candidate never
passes on nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from attn_deploy import defaults

if TYPE_CHECKING:
    from attn_deploy.artifact.manifest import Manifest

DETECTION_OUTPUTS = ("boxes", "scores", "labels")


@dataclass(frozen=True)
class DetectionThresholds:
    """When a candidate's detections match the reference's (``check``'s defaults)."""

    iou: float = defaults.DETECTION_IOU
    #: matched / max(reference count, candidate count): extra candidate boxes count against it too.
    min_matched: float = defaults.DETECTION_MIN_MATCHED
    max_score_error: float = defaults.DETECTION_MAX_SCORE_ERROR


@dataclass(frozen=True)
class DetectionSelection:
    """Which detections a detector keeps: scores at or above ``score_threshold``, its best ``max_detections``."""

    score_threshold: float = 0.0
    #: None: no limit known, so a side is never taken to be full.
    max_detections: int | None = None

    def cutoff(self, scores: np.ndarray) -> float:
        """The score below which one side's output had to drop a detection: the threshold, or the
        lowest kept score when the side holds ``max_detections`` (the next one was cut for rank)."""
        full = self.max_detections is not None and len(scores) >= self.max_detections
        return max(self.score_threshold, float(np.min(scores))) if full and len(scores) else self.score_threshold

    def to_json(self) -> dict[str, float | int | None]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> DetectionSelection:
        threshold, limit = data.get("score_threshold"), data.get("max_detections")
        return cls(float(threshold) if isinstance(threshold, (int, float)) else 0.0, int(limit) if isinstance(limit, (int, float)) else None)


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
    #: Unmatched detections left out of ``matched_fraction``: they score within the allowed score error
    #: of where the other side cut (see the module docstring).
    borderline: int = 0
    #: The denominator of ``matched_fraction``: matched pairs plus the larger side's counted unmatched.
    counted: int = 0
    selection: DetectionSelection | None = None

    @property
    def tally(self) -> str:
        """``matched/counted``, with the borderline detections left out when there are any."""
        return f"{self.matched}/{self.counted}" + (f" (+{self.borderline} borderline)" if self.borderline else "")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def selection_of(manifest: Manifest) -> DetectionSelection | None:
    """The selection an artifact's manifest recorded at export, if any."""
    return DetectionSelection.from_json(manifest.detection_selection) if manifest.detection_selection else None


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


def _pairs(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Reference-candidate pairs with ``iou`` at or above ``threshold`` (-1: other class): the most
    pairs possible, then the highest total IoU."""
    from scipy.optimize import linear_sum_assignment

    eligible = iou >= threshold
    if not eligible.any():
        return []
    # Each eligible pair is worth more than all the IoU any matching can add up, so count comes first.
    weight = np.where(eligible, 1.0 + min(iou.shape) + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if eligible[i, j]]


def match_detections(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    thresholds: DetectionThresholds = DetectionThresholds(),
    roles: Roles | None = None,
    selection: DetectionSelection | None = None,
) -> DetectionResult:
    """Match ``candidate``'s detections to ``reference``'s; ``roles`` names their boxes/scores/labels
    outputs, ``selection`` (when known) what the detector keeps, for borderline detections."""
    names = [roles[k] if roles else k for k in DETECTION_OUTPUTS]
    rb, rs, rl = (np.asarray(reference[n]) for n in names)
    cb, cs, cl = (np.asarray(candidate[n]) for n in names)
    rs, cs = rs.reshape(-1).astype(np.float64), cs.reshape(-1).astype(np.float64)
    n_ref, n_cand = len(rs), len(cs)
    if n_ref == 0 and n_cand == 0:
        return DetectionResult(0, 0, 0, 1.0, 1.0, 1.0, 0.0, 0.0, thresholds, True, selection=selection)
    iou = box_iou(rb.reshape(-1, 4), cb.reshape(-1, 4)) if n_ref and n_cand else np.zeros((n_ref, n_cand))
    iou = np.where(rl.reshape(-1, 1) == cl.reshape(1, -1), iou, -1.0)
    pairs = _pairs(iou, thresholds.iou)
    ious = [float(iou[i, j]) for i, j in pairs]
    score_errors = [float(abs(rs[i] - cs[j])) for i, j in pairs]
    matched = len(pairs)
    unmatched_ref = np.ones(n_ref, dtype=bool)
    unmatched_cand = np.ones(n_cand, dtype=bool)
    for i, j in pairs:
        unmatched_ref[i] = unmatched_cand[j] = False
    border_ref = border_cand = 0
    if selection is not None:
        # Missing on the other side within the allowed score error of where that side cut.
        tolerance = thresholds.max_score_error
        border_ref = int(np.sum(unmatched_ref & (rs < selection.cutoff(cs) + tolerance)))
        border_cand = int(np.sum(unmatched_cand & (cs < selection.cutoff(rs) + tolerance)))
    counted = matched + max(int(unmatched_ref.sum()) - border_ref, int(unmatched_cand.sum()) - border_cand)
    if counted == 0:  # nothing decisive left to judge: count every detection rather than pass on none
        border_ref = border_cand = 0
        counted = max(n_ref, n_cand)
    fraction = matched / counted
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
        borderline=border_ref + border_cand,
        counted=counted,
        selection=selection,
    )
