"""Detection matching: by class and IoU, robust to reordering and to different counts."""

from __future__ import annotations

import numpy as np

from attn_deploy.check.detection import DetectionSelection, DetectionThresholds, box_iou, match_detections


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


def test_a_crowd_of_overlapping_boxes_pairs_as_many_as_it_can() -> None:
    # Greedy (best reference first, its highest-IoU candidate) pairs reference 0 with candidate 1
    # and leaves reference 1 without a partner; one to one, both pair.
    ref = _dets([[0, 0, 10, 10], [4, 0, 14, 10]], [0.9, 0.8], [1, 1])
    cand = _dets([[-3, 0, 7, 10], [1, 0, 11, 10]], [0.9, 0.8], [1, 1])
    assert box_iou(ref["boxes"][1:], cand["boxes"][:1])[0, 0] < 0.5 <= box_iou(ref["boxes"][:1], cand["boxes"][:1])[0, 0]
    result = match_detections(ref, cand)
    assert result.matched == 2 and result.passed


SELECTION = DetectionSelection(score_threshold=0.3, max_detections=10)


def test_a_detection_near_the_threshold_may_vanish_without_counting() -> None:
    ref = _dets([*REF["boxes"].tolist(), [50, 50, 60, 60]], [*REF["scores"].tolist(), 0.32], [*REF["labels"].tolist(), 4])
    strict = match_detections(ref, REF)
    assert strict.matched_fraction == 0.75 and not strict.passed
    result = match_detections(ref, REF, selection=SELECTION)
    assert result.passed and result.borderline == 1 and result.counted == 3 and result.tally == "3/3 (+1 borderline)"
    # An extra candidate detection near the threshold is borderline the same way.
    assert match_detections(REF, ref, selection=SELECTION).passed


def test_a_confident_detection_that_vanishes_still_fails() -> None:
    ref = _dets([*REF["boxes"].tolist(), [50, 50, 60, 60]], [*REF["scores"].tolist(), 0.36], [*REF["labels"].tolist(), 4])
    result = match_detections(ref, REF, selection=SELECTION)
    assert not result.passed and result.borderline == 0 and result.matched_fraction == 0.75


def test_a_full_side_cuts_at_its_lowest_score() -> None:
    # Both sides hold max_detections: the 0.6 detection may have been pushed out of the candidate's
    # top 3 by one within the score tolerance of the candidate's lowest kept score (0.58).
    top3 = DetectionSelection(score_threshold=0.0, max_detections=3)
    ref = _dets([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0.9, 0.8, 0.6], [1, 2, 4])
    cand = _dets([[0, 0, 10, 10], [20, 20, 40, 40], [70, 70, 80, 80]], [0.9, 0.8, 0.58], [1, 2, 5])
    assert match_detections(ref, cand, selection=top3).passed
    assert not match_detections(ref, cand, selection=DetectionSelection(0.0, None)).passed


def test_nothing_matched_never_passes_on_borderline_detections_alone() -> None:
    ref = _dets([[0, 0, 10, 10]], [0.31], [1])
    cand = _dets([[50, 50, 60, 60]], [0.31], [1])
    result = match_detections(ref, cand, selection=SELECTION)
    assert not result.passed and result.counted == 1 and result.borderline == 0


def test_selection_is_found_on_a_torchvision_detector() -> None:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from attn_deploy.export.detector import detection_selection

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, box_score_thresh=0.2, box_detections_per_img=50)
    # The region proposals' own score_thresh (0.0) comes first in module order; the one with a limit wins.
    assert detection_selection(model) == {"score_threshold": 0.2, "max_detections": 50, "found": "roi_heads"}


def test_a_recorded_selection_survives_the_manifest() -> None:
    from onnx import TensorProto, helper

    from attn_deploy.artifact.manifest import Manifest
    from attn_deploy.check.detection import selection_of

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    recorded = {"score_threshold": 0.05, "max_detections": 100, "found": "roi_heads"}
    manifest = Manifest.describe(helper.make_model(graph), source="s", exporter="e", detection_selection=recorded)
    again = Manifest.from_json(manifest.to_json())
    assert again.detection_selection == recorded and selection_of(again) == DetectionSelection(0.05, 100)
