"""The gate cannot be talked down by the file it judges; its stdout stays machine-readable; bad data is an input error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import attn_deploy.api as ad
from tests.conftest import RunCli


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from attn_deploy.zoo import SelfAttention

    torch.manual_seed(0)
    block = SelfAttention(16)
    torch.nn.init.constant_(block.gamma, 0.8)  # gamma starts at 0: the output would not depend on the attention
    path, _ = ad.export(block, input_shapes=[(1, 16, 8, 8)]).save(tmp_path_factory.mktemp("trust") / "m.onnx")
    return path


def _wrong_with_decoy(src: Path, dst: Path, decoy: str) -> Path:
    """``src`` with 1% added to one projection's weights, plus an unused fp16 initializer or int8 op; the manifest copied."""
    model = onnx.load(src)
    weight = next(i for i in model.graph.initializer if i.name.endswith("value.weight"))
    array = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array((array * 1.01).astype(array.dtype), weight.name))
    if decoy == "fp16":
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.float16), "decoy"))
    else:
        model.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "decoy_x"))
        model.graph.node.append(helper.make_node("DynamicQuantizeLinear", ["decoy_x"], ["dq", "ds", "dz"], name="decoy"))
    onnx.save(model, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))  # a manifest that claims to describe it
    return dst


@pytest.mark.parametrize("decoy", ["fp16", "int8"])
def test_a_decoy_does_not_loosen_the_gate(run_cli: RunCli, exported: Path, tmp_path: Path, decoy: str) -> None:
    bad = _wrong_with_decoy(exported, tmp_path / f"bad-{decoy}.onnx", decoy)
    code, stdout, stderr = run_cli("check", str(exported), str(bad), "--backends", "ort", "--json")
    report = json.loads(stdout)  # stdout is the report and nothing else, also when the check fails
    assert code == 1, stderr
    assert [c["precision"] for c in report["comparisons"]] == ["fp32"]
    assert any("does not match" in n and "strict fp32" in n for n in report["notes"]), report["notes"]


def test_a_matching_manifest_sets_the_preset(exported: Path, tmp_path: Path) -> None:
    fp16 = ad.to_fp16(exported).artifact
    path, _ = fp16.save(tmp_path / "fp16.onnx")
    report = ad.check(exported, path, backends=("ort",))
    assert [c.precision for c in report.comparisons] == ["fp16"] and report.notes == []
    assert report.passed


def test_nonfinite_data_is_an_input_error(run_cli: RunCli, exported: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", input=x)
    result = run_cli("check", str(exported), str(exported), "--backends", "ort", "--data", str(tmp_path / "nan.npz"))
    result.assert_error("NaN/Inf", code=2)
    assert "--allow-nonfinite" in result.stderr
    code, _, stderr = run_cli("check", str(exported), str(exported), "--backends", "ort", "--data", str(tmp_path / "nan.npz"), "--allow-nonfinite")
    assert code != 2 and "error:" not in stderr


@pytest.mark.parametrize("command", ["fuse", "quantize"])
def test_a_stage_does_not_overwrite_its_input(run_cli: RunCli, exported: Path, tmp_path: Path, command: str) -> None:
    if command == "fuse":
        src = tmp_path / "plain.onnx"
        shutil.copy(exported, src)  # fuse finds nothing to fuse in it, so write anyway
        args = ["fuse", str(src), "-o", str(src), "--always-write"]
    else:
        src = tmp_path / "q.onnx"
        shutil.copy(exported, src)
        shutil.copy(exported.with_suffix(".json"), src.with_suffix(".json"))
        args = ["quantize", str(src), "-o", str(src), "--iterations", "0"]
    before = src.read_bytes()
    run_cli(*args).assert_error("is the model it was made from")
    assert src.read_bytes() == before
