"""Detection matching: by class and IoU, robust to reordering and to different counts."""

from __future__ import annotations

import numpy as np

from attn_deploy.check.detection import DetectionThresholds, box_iou, match_detections


def _dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, np.ndarray]:
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32), "labels": np.array(labels, np.int64)}


REF = _dets([[0, 0, 10, 10], [20, 20, 40, 40], [5, 5, 15, 15]], [0.9, 0.8, 0.7], [1, 2, 1])


def test_iou() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_reordered_identical_detections_match() -> None:
    cand = _dets(REF["boxes"][::-1].tolist(), REF["scores"][::-1].tolist(), REF["labels"][::-1].tolist())
    result = match_detections(REF, cand)
    assert result.passed and result.matched == 3 and result.mean_iou == 1.0


def test_wrong_class_and_missing_box_are_unmatched() -> None:
    cand = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [1, 3])
    result = match_detections(REF, cand)
    assert result.matched == 1 and result.matched_fraction == 1 / 3 and not result.passed


def test_extra_candidate_boxes_count_against_the_match() -> None:
    cand = _dets([*REF["boxes"].tolist(), [50, 50, 60, 60]], [*REF["scores"].tolist(), 0.3], [*REF["labels"].tolist(), 4])
    result = match_detections(REF, cand, DetectionThresholds(min_matched=0.99))
    assert result.matched == 3 and result.matched_fraction == 0.75 and not result.passed


def test_iou_threshold_and_score_error() -> None:
    shifted = _dets((REF["boxes"] + 1).tolist(), (REF["scores"] - 0.01).tolist(), REF["labels"].tolist())
    assert match_detections(REF, shifted, DetectionThresholds(iou=0.5)).passed
    assert not match_detections(REF, shifted, DetectionThresholds(iou=0.95)).passed
    assert not match_detections(REF, shifted, DetectionThresholds(max_score_error=0.001)).passed
