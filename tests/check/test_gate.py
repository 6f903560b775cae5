"""The parity gate against injected faults, its reports, and its exit codes."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from attn_deploy.export import export_model
from attn_deploy.export.loading import LoadedModel
from attn_deploy.zoo import SelfAttention
from tests.conftest import RunCli, relu_model


class TwoHeads(nn.Module):
    """Two outputs of the same shape, so swapping them is only visible in the numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = SelfAttention(16)
        nn.init.constant_(self.attention.gamma, 0.8)
        self.other = nn.Conv2d(16, 16, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention(x), self.other(x)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    loaded = LoadedModel(module=TwoHeads().eval(), source="two-heads", input_shapes=((1, 16, 8, 8),), output_names=("a", "b"))
    return export_model(loaded, tmp_path_factory.mktemp("gate") / "two.onnx").onnx_path


def _variant(src: Path, dst: Path, edit) -> Path:
    model = onnx.load(src)
    edit(model)
    onnx.save(model, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _initializer(model: onnx.ModelProto, suffix: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name.endswith(suffix))


def test_identical_models_pass(run_cli: RunCli, exported: Path, tmp_path: Path) -> None:
    copy = _variant(exported, tmp_path / "copy.onnx", lambda m: None)
    code, stdout, stderr = run_cli("check", str(exported), str(copy), "--backends", "ort")
    assert code == 0, stdout + stderr
    assert "PASS" in stdout


def test_perturbed_weight_fails(run_cli: RunCli, exported: Path, tmp_path: Path) -> None:
    def perturb(model: onnx.ModelProto) -> None:
        tensor = _initializer(model, "value.weight")
        array = numpy_helper.to_array(tensor).copy()
        array.flat[0] += 0.05
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))

    bad = _variant(exported, tmp_path / "perturbed.onnx", perturb)
    code, stdout, _ = run_cli("check", str(exported), str(bad), "--backends", "ort")
    assert code == 1
    assert "FAIL" in stdout


def test_swapped_outputs_fail(run_cli: RunCli, exported: Path, tmp_path: Path) -> None:
    def swap(model: onnx.ModelProto) -> None:
        rename = {"a": "b", "b": "a"}
        for node in model.graph.node:
            node.output[:] = [rename.get(o, o) for o in node.output]
        for vi in model.graph.output:
            vi.name = rename[vi.name]
        model.graph.output.sort(key=lambda vi: vi.name)

    bad = _variant(exported, tmp_path / "swapped.onnx", swap)
    assert np.array_equal(*(onnx.load(p).graph.output[0].type.tensor_type.shape.dim for p in (exported, bad)))
    code, stdout, _ = run_cli("check", str(exported), str(bad), "--backends", "ort")
    assert code == 1
    assert stdout.count("FAIL") >= 2


def test_nan_fails_and_is_counted(run_cli: RunCli, exported: Path, tmp_path: Path) -> None:
    def inject(model: onnx.ModelProto) -> None:
        tensor = _initializer(model, "other.bias")
        array = numpy_helper.to_array(tensor).copy()
        array[3] = np.nan
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))

    bad = _variant(exported, tmp_path / "nan.onnx", inject)
    report = tmp_path / "r.json"
    code, _, _ = run_cli("check", str(exported), str(bad), "--backends", "ort", "--report", str(report))
    assert code == 1
    outputs = {o["name"]: o for o in json.loads(report.read_text())["comparisons"][0]["outputs"]}
    assert outputs["b"]["nonfinite"] == 64 and not outputs["b"]["passed"]
    assert outputs["a"]["passed"]


def test_loose_per_output_tolerance_can_accept_a_known_difference(run_cli: RunCli, exported: Path, tmp_path: Path) -> None:
    def perturb(model: onnx.ModelProto) -> None:
        tensor = _initializer(model, "other.bias")
        array = numpy_helper.to_array(tensor).copy()
        array += 1e-3
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))

    bad = _variant(exported, tmp_path / "shifted.onnx", perturb)
    assert run_cli("check", str(exported), str(bad), "--backends", "ort")[0] == 1
    code, stdout, stderr = run_cli("check", str(exported), str(bad), "--backends", "ort", "--atol", "b=2e-3", "--min-cosine", "0.999")
    assert code == 0, stdout + stderr


def test_torch_source_and_report_files(run_cli: RunCli, tmp_path: Path) -> None:
    paths = {k: tmp_path / f"out.{k}" for k in ("json", "md", "xml")}
    code, stdout, stderr = run_cli("check", "zoo:dynamic-256", "--report", str(paths["json"]), "--markdown", str(paths["md"]), "--junit", str(paths["xml"]))
    assert code == 0, stdout + stderr
    report = json.loads(paths["json"].read_text())
    assert report["passed"] and report["reference"] == "torch:zoo:dynamic-256"
    output = report["comparisons"][0]["outputs"][0]
    assert {"max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel", "mean_rel", "median_rel", "p99_rel", "cosine", "nonfinite"} <= set(output)
    assert output["tolerance"]["atol"] == 1e-4  # the fp32 preset
    assert {"backend": "trt", "reason": "no .engine artifact given (build one with attn-deploy build-trt)"} in report["skipped"]
    assert "passed" in paths["md"].read_text() and "skipped" in paths["md"].read_text()
    suite = ET.parse(paths["xml"]).getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0" and suite.get("skipped") == "1"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["zoo:sagan-256", "--backends", "cuda"], "--backends"),
        (["zoo:sagan-256", "missing.onnx"], "no such file"),
        (["zoo:sagan-256", "--backends", "trt"], "at least one candidate"),
        (["zoo:sagan-256", "--atol", "boxes=lots"], "--atol"),
        (["zoo:sagan-256", "--data", "nowhere.npz"], "no such file"),
        (["zoo:sagan-256", "--precision", "int4"], "--precision"),
    ],
)
def test_usage_errors_exit_2(run_cli: RunCli, args: list[str], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli("check", *args)
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0]


def test_lower_on_the_fly(run_cli: RunCli, exported: Path) -> None:
    code, stdout, stderr = run_cli("check", str(exported), str(exported), "--backends", "ort", "--lower", "--json")
    assert code == 0, stderr
    (comparison,) = json.loads(stdout)["comparisons"]
    assert comparison["candidate"].endswith("two.ort.onnx") and comparison["passed"]


def test_npz_data_gives_the_shapes_of_dynamic_inputs(run_cli: RunCli, tmp_path: Path) -> None:
    model = relu_model(tmp_path / "relu.onnx")
    run_cli("check", str(model), str(model), "--backends", "ort").assert_error("pass --input x:1x4")
    data = tmp_path / "x.npz"
    np.savez(data, x=np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    code, stdout, stderr = run_cli("check", str(model), str(model), "--backends", "ort", "--data", str(data), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["inputs"] == [{"name": "x", "shape": [3, 4], "dtype": "float32"}]
