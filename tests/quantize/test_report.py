"""The quantize report's detection fields (the matcher itself is tested in tests/check)."""

from __future__ import annotations

import numpy as np

from attn_deploy.bench.compare import detection_parity


def _dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, np.ndarray]:
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32), "labels": np.array(labels, np.int64)}


def test_matches_same_label_overlapping_boxes_once() -> None:
    reference = _dets([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [1, 2, 3])
    candidate = _dets([[1, 0, 11, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.85, 0.8, 0.7], [1, 1, 3])
    result = detection_parity(reference, candidate)
    # #1 matches (IoU 0.82); #2 has the right box but the wrong label; #3's box does not overlap.
    assert result["matched"] == 1 and result["matched_fraction"] == 1 / 3
    assert abs(result["max_score_diff_matched"] - 0.05) < 1e-6


def test_no_reference_detections_is_full_parity() -> None:
    empty = _dets([], [], [])
    assert detection_parity(empty, empty)["matched_fraction"] == 1.0


def test_a_whole_detector_is_listed_by_op_type_not_by_name() -> None:
    from attn_deploy.quantize.render import SHOWN_BY_NAME, _lines

    def lines(names: list[str]) -> list[str]:
        by_type = {"Conv": sum(n.startswith("conv") for n in names), "Add": sum(n.startswith("add") for n in names)}
        return _lines({"nodes": {"quantized": names, "quantized_by_op_type": by_type, "skipped": []}})

    few = [f"conv{i}" for i in range(3)]
    assert lines(few) == ["quantized 3 node(s): conv0, conv1, conv2"]
    many = [f"conv{i}" for i in range(SHOWN_BY_NAME)] + ["add0", "add1"]
    assert lines(many) == [f"quantized {SHOWN_BY_NAME + 2} node(s): Conv {SHOWN_BY_NAME}, Add 2 (names in --json / --report)"]
