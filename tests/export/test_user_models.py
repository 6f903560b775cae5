"""``export`` finds every attention in the models users bring (tests/user_models/hand_written.py): SDPA and
MHA are routed through the op while tracing, hand-written attention is fused from the exported
graph, and what is left plain is a warning naming the node (an error with ``--strict``).
Then ``check`` against PyTorch passes and ``lower`` works on what ``export`` wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import RunCli, run_ort
from tests.fuse import models as M
from tests.user_models import hand_written as U

#: name -> (export options, check options)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "seed_block": ([], []),
    "seed_block_temperature": ([], []),
    # The Faster R-CNN's backbone with the seed block after layer4, cut out of the detector with
    # --submodule. Random ResNet-50 features reach |60|: ORT and PyTorch differ by 3e-4 there with
    # or without the fusion (5e-6 relative), above the fp32 preset's absolute 1e-4.
    "faster_rcnn_with_attention": (["--submodule", "backbone"], ["--atol", "1e-3"]),
    # TorchScript: the dynamo exporter takes minutes for swin_t on two busy cores.
    "swin_t": (["--exporter", "torchscript"], []),
    # Einsum attention on [B, G, H, N, d], as the dynamo exporter keeps it.
    # Their logits are small (|y| < 0.1 with random weights): a tolerance that means something there.
    "maxvit": (["--exporter", "dynamo"], ["--atol", "1e-6"]),
    "swin_v2": ([], ["--atol", "1e-6"]),
}
#: What ``check`` compares the export with (the part --submodule cut out, as a model of its own).
REFERENCE = {"faster_rcnn_with_attention": "faster_rcnn_backbone_with_attention"}


def _shape(name: str) -> tuple[str, int]:
    shape, blocks = U.SHAPES[REFERENCE.get(name, name)]
    return "x".join(map(str, shape)), blocks


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in ("faster_rcnn_with_attention", "swin_t") else []) for n in CASES]
)
def test_export_check_lower(name: str, run_cli: RunCli, tmp_path: Path) -> None:
    export_options, check_options = CASES[name]
    shape, blocks = _shape(name)
    out = tmp_path / f"{name}.onnx"
    code, stdout, stderr = run_cli("export", f"tests.user_models.hand_written:{name}", "--input-shape", shape, "-o", out, "--json", *export_options)
    assert code == 0, stderr
    manifest = json.loads(stdout)
    assert len(manifest["fused_attention"]) == blocks
    assert [a["status"] for a in manifest["attention"]] == ["fused"] * blocks
    assert "warning" not in stderr

    reference = f"tests.user_models.hand_written:{REFERENCE.get(name, name)}"
    code, _, stderr = run_cli("check", reference, out, "--input-shape", shape, "--backends", "torch,ort", *check_options)
    assert code == 0, stderr

    lowered = tmp_path / f"{name}.lowered.onnx"
    code, _, stderr = run_cli("lower", out, "-o", lowered)
    assert code == 0, stderr
    exported = onnx.load(out)
    feeds, other = M.random_feeds(exported, seed=0), M.random_feeds(exported, seed=1)
    for want, got, elsewhere in zip(run_ort(out, feeds), run_ort(lowered, feeds), run_ort(out, other), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
        assert not np.allclose(want, elsewhere), "the output does not depend on the input"


def test_export_is_byte_identical(run_cli: RunCli, tmp_path: Path) -> None:
    for out in ("a.onnx", "b.onnx"):
        assert run_cli("export", "tests.user_models.hand_written:seed_block", "--input-shape", "1x16x6x5", "-o", tmp_path / out).exit_code == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_routed_attention_and_a_classifier_softmax(run_cli: RunCli, tmp_path: Path) -> None:
    """Two SDPA blocks go through the op while tracing; the classifier's softmax is not attention."""
    code, stdout, stderr = run_cli("export", "tests.fuse.models:TwoBlocks", "--input-shape", "1x8x16", "-o", tmp_path / "m.onnx", "--json")
    assert code == 0, stderr
    assert [a["status"] for a in json.loads(stdout)["attention"]] == ["routed", "routed"]
    assert "warning" not in stderr


def test_attention_left_plain_is_a_warning(run_cli: RunCli, tmp_path: Path) -> None:
    code, stdout, stderr = run_cli("export", "tests.fuse.test_near_misses:MaskAfterSoftmax", "--input-shape", "1x8x16", "-o", tmp_path / "m.onnx")
    assert code == 0, stderr
    (warning,) = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert "attention left unfused at" in warning and "not to a MatMul with V" in warning
    assert "0 FusedAttention: 1 left plain" in stderr
    (finding,) = json.loads((tmp_path / "m.json").read_text())["attention"]
    assert finding["status"] == "plain" and "not to a MatMul with V" in finding["detail"]


def test_attention_updated_in_place_is_a_warning(run_cli: RunCli, tmp_path: Path) -> None:
    """MViT's in-place ``attn[:, :, 1:, 1:] += rel`` (ScatterND between the scores and the softmax) was
    left plain without a word; it is named now."""
    code, _, stderr = run_cli("export", "tests.fuse.test_near_misses:SliceUpdatedInPlace", "--input-shape", "1x8x16", "-o", tmp_path / "m.onnx")
    assert code == 0, stderr
    (warning,) = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert "attention left unfused at" in warning and "partly overwritten by ScatterND" in warning


def test_strict_makes_it_an_error(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("export", "tests.fuse.test_near_misses:MaskAfterSoftmax", "--input-shape", "1x8x16", "-o", tmp_path / "m.onnx", "--strict")
    result.assert_error("--strict: attention left unfused at")
    assert not (tmp_path / "m.onnx").exists()
