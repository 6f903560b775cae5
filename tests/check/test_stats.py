from __future__ import annotations

import numpy as np
import pytest

from attn_deploy.check.stats import compare_outputs, error_stats


def test_identical_arrays() -> None:
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    s = error_stats("x", a, a.copy())
    assert s.max_abs == 0 and abs(s.cosine - 1.0) < 1e-12 and s.nonfinite == 0 and s.shapes_match


def test_known_errors() -> None:
    ref = np.array([1.0, 2.0, 4.0, -8.0])
    out = ref + np.array([0.0, 0.0, 0.0, 0.8])
    s = error_stats("x", ref, out)
    assert s.max_abs == pytest.approx(0.8) and s.mean_abs == pytest.approx(0.2) and s.median_abs == 0.0
    assert abs(s.max_rel - 0.1) < 1e-12 and abs(s.rel_to_max - 0.1) < 1e-12
    assert s.cosine < 1.0


def test_shape_mismatch_and_nan() -> None:
    s = error_stats("x", np.zeros((2, 3)), np.zeros((3, 2)))
    assert not s.shapes_match and s.max_abs == float("inf")
    s = error_stats("x", np.ones(4), np.array([1.0, np.nan, np.inf, 1.0]))
    assert s.nonfinite == 2 and s.max_abs == float("inf")


def test_compare_outputs_requires_every_reference_output() -> None:
    try:
        compare_outputs({"a": np.zeros(1)}, {"b": np.zeros(1)})
    except KeyError as e:
        assert "lacks outputs" in str(e)
    else:  # pragma: no cover
        raise AssertionError("missing output not reported")
