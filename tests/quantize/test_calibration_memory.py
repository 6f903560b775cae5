"""Static calibration plans its memory: strided passes, minmax, or a refusal, by the memory available.

The available memory is monkeypatched to sizes computed from the model's own estimate, so the
choices a detector meets at 800x1333 happen here on a 32x32 convolution stack in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from attn_deploy import defaults
from attn_deploy.errors import InputError
from attn_deploy.quantize import calibration_memory
from attn_deploy.quantize.calibration_memory import (
    calibrated_activations,
    histogram_bytes,
    minmax_bytes,
    plan_calibration,
)
from attn_deploy.quantize.dynamic import plan
from attn_deploy.quantize.static import STATIC_OP_TYPES, quantize_static
from tests.conftest import RunCli
from tests.quantize.test_static import _conv_model

pytestmark = pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript:DeprecationWarning", "ignore:The feature will be removed:DeprecationWarning"
)
SAMPLES = 6


@pytest.fixture(scope="module")
def convs(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, Path, calibration_memory.Activations]:
    folder = tmp_path_factory.mktemp("convs")
    model = _conv_model(folder)
    path = folder / "convs.onnx"
    onnx.save(model, path)
    return model, path, calibrated_activations(path, STATIC_OP_TYPES)


def _available_for(need: int) -> int:
    """Memory available for which exactly ``need`` bytes fit the calibration's budget."""
    return int(need / defaults.CALIBRATION_MEMORY_FRACTION) + 1


def _samples() -> list[dict[str, np.ndarray]]:
    return [{"x": np.random.default_rng(i).random((1, 3, 32, 32), dtype=np.float32)} for i in range(SAMPLES)]


def test_the_estimate_counts_every_calibrated_activation(convs: tuple[onnx.ModelProto, Path, calibration_memory.Activations]) -> None:
    _, _, act = convs
    # x, three conv outputs (two ReLU'd and read by the next conv): 3x32x32 + 16x32x32 x4 + 8x32x32 floats
    assert act.total == 4 * 32 * 32 * (3 + 4 * 16 + 8) and act.largest == 4 * 16 * 32 * 32 and act.unresolved == 0
    assert histogram_bytes(act, 2) < histogram_bytes(act, 3) and minmax_bytes(act) < histogram_bytes(act, 1)


def test_the_plan_follows_the_memory_available(convs: tuple[onnx.ModelProto, Path, calibration_memory.Activations]) -> None:
    _, _, act = convs
    whole = plan_calibration(act, SAMPLES, "percentile", available=1 << 40)
    assert (whole.method, whole.samples_per_pass, whole.extra_options()) == ("percentile", SAMPLES, {})
    strided = plan_calibration(act, SAMPLES, "percentile", available=_available_for(histogram_bytes(act, 2)))
    assert (strided.method, strided.samples_per_pass) == ("percentile", 2)  # 3 per pass would not fit; 2 divides 6
    assert strided.extra_options() == {"CalibStridedMinMax": 2} and "2 sample(s) per pass" in strided.why
    fallback = plan_calibration(act, SAMPLES, "entropy", available=_available_for(minmax_bytes(act)))
    assert fallback.method == "minmax" and fallback.requested == "entropy" and "minmax instead of entropy" in fallback.why
    with pytest.raises(InputError, match=r"needs about .* even with --calibrate-method minmax"):
        plan_calibration(act, SAMPLES, "percentile", available=_available_for(minmax_bytes(act)) - 2)


def test_quantize_static_calibrates_in_passes_and_ranks_nodes_as_with_memory_to_spare(
    convs: tuple[onnx.ModelProto, Path, calibration_memory.Activations], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _, act = convs
    spare = quantize_static(model, plan(model, include_convs=True), _samples(), method="minmax", target_cosine=None)
    monkeypatch.setattr(calibration_memory, "available_memory", lambda: _available_for(histogram_bytes(act, 2)))
    tight = quantize_static(model, plan(model, include_convs=True), _samples(), target_cosine=None)
    assert tight.calibration is not None and tight.calibration.samples_per_pass == 2
    assert set(tight.sqnr_db) == set(spare.sqnr_db) and all(db > 20 for db in tight.sqnr_db.values())
    monkeypatch.setattr(calibration_memory, "available_memory", lambda: _available_for(minmax_bytes(act)))
    low = quantize_static(model, plan(model, include_convs=True), _samples(), target_cosine=None)
    assert low.calibration is not None and low.calibration.method == "minmax"
    # The SQNR ranking read one tensor per pass here, and measures what it measured in one pass.
    assert low.sqnr_db == pytest.approx(spare.sqnr_db, rel=1e-6)


def test_quantize_refuses_in_one_line_when_nothing_fits(
    convs: tuple[onnx.ModelProto, Path, calibration_memory.Activations], run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from PIL import Image

    _, path, _ = convs
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    monkeypatch.setattr(calibration_memory, "available_memory", lambda: 1 << 10)
    out = tmp_path / "q.onnx"
    run_cli("quantize", str(path), "-o", str(out), "--calibrate", str(photos)).assert_error("static calibration needs about")
    assert not out.exists()


def test_sizes_shape_inference_cannot_resolve_are_measured_on_a_sample(
    convs: tuple[onnx.ModelProto, Path, calibration_memory.Activations], tmp_path: Path
) -> None:
    """A whole detector resizes its input at run time; here the height and width are just dynamic."""
    model, _, static = convs
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(model)
    del dynamic.graph.value_info[:]
    for value in (*dynamic.graph.input, *dynamic.graph.output):
        for axis in (2, 3):
            value.type.tensor_type.shape.dim[axis].dim_param = f"d{axis}"
    path = tmp_path / "dynamic.onnx"
    onnx.save(dynamic, path)
    assert calibrated_activations(path, STATIC_OP_TYPES).unresolved > 0
    measured = calibrated_activations(path, STATIC_OP_TYPES, _samples()[0])
    assert measured.unresolved == 0 and measured.sizes == static.sizes
    assert not list(tmp_path.glob("*profile*"))
