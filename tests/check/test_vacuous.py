"""Vacuous passes are flagged: a constant reference output, or one that ignores the input, passes
with cosine 1.0 whatever the model does, so `check` warns (table and JSON) without changing the gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from attn_deploy.artifact.graph import IR_VERSION
from attn_deploy.check.vacuity import constant_warning, output_warnings, unchanged_warning
from tests.conftest import RunCli


def _model(tmp_path: Path, name: str, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> Path:
    """x [1, 4, 6] -> ``nodes`` -> ``dead`` (the output under test) and ``live`` (2·x, depends on x)."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Add", ["x", "x"], ["live"])], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 6]) for n in ("dead", "live")],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    shutil.copy(path, tmp_path / f"{name}_copy.onnx")
    return path


def zeros_model(tmp_path: Path) -> Path:
    """``dead`` = x · 0: all zeros, as a randomly initialised ViT's output is."""
    return _model(tmp_path, "zeros", [helper.make_node("Mul", ["x", "zero"], ["dead"])], [numpy_helper.from_array(np.zeros((), np.float32), "zero")])


def ignores_input_model(tmp_path: Path) -> Path:
    """``dead`` = table + x · 0: varied values that do not depend on x."""
    table = np.random.default_rng(0).standard_normal((1, 4, 6)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "zero"], ["nothing"]), helper.make_node("Add", ["table", "nothing"], ["dead"])]
    return _model(tmp_path, "ignores", nodes, [numpy_helper.from_array(np.zeros((), np.float32), "zero"), numpy_helper.from_array(table, "table")])


def _check_json(run_cli: RunCli, model: Path) -> dict[str, object]:
    code, stdout, stderr = run_cli("check", model, model.with_name(model.stem + "_copy.onnx"), "--json")
    assert code == 0, stderr  # the gate passes: warnings do not change the exit code
    report: dict[str, object] = json.loads(stdout)
    assert report["passed"] is True
    return report


def _warnings(report: dict[str, object]) -> dict[str, str | None]:
    (comparison,) = report["comparisons"]  # type: ignore[misc]
    return {o["name"]: o["warning"] for o in comparison["outputs"]}


def test_all_zero_output_warns_in_json_and_table(run_cli: RunCli, tmp_path: Path) -> None:
    model = zeros_model(tmp_path)
    warnings = _warnings(_check_json(run_cli, model))
    assert warnings["live"] is None
    assert warnings["dead"] is not None and "constant (every value is 0)" in warnings["dead"] and "proves little" in warnings["dead"]
    code, stdout, stderr = run_cli("check", model, model.with_name("zeros_copy.onnx"))
    assert code == 0, stderr
    dead_row = next(line for line in stdout.splitlines() if "dead" in line)
    assert "pass" in dead_row and "warning" in dead_row and "constant" in stdout
    assert "warning" not in next(line for line in stdout.splitlines() if "live" in line)


def test_output_that_ignores_the_input_warns(run_cli: RunCli, tmp_path: Path) -> None:
    warnings = _warnings(_check_json(run_cli, ignores_input_model(tmp_path)))
    assert warnings["live"] is None
    assert warnings["dead"] is not None and "does not depend on them" in warnings["dead"]


def test_warning_rules() -> None:
    rng = np.random.default_rng(0)
    varied = rng.standard_normal((2, 3)).astype(np.float32)
    assert constant_warning(np.full((2, 3), 7, np.int64)) is not None
    assert constant_warning(varied) is None and constant_warning(np.zeros(1)) is None  # one value is not "constant"
    assert constant_warning(np.array([np.nan, np.nan])) is None  # non-finite values are judged elsewhere
    assert unchanged_warning(varied, varied.copy()) is not None and unchanged_warning(varied, varied + 1) is None
    x1, x2 = {"x": varied}, {"x": varied + 1}
    # several samples are different inputs already: an output equal on all of them warns
    assert set(output_warnings([{"y": varied}, {"y": varied}], [x1, x2])) == {"y"}
    assert output_warnings([{"y": varied}, {"y": varied * 2}], [x1, x2]) == {}
    # the probe is ignored when its input is the same as the sample's
    assert output_warnings([{"y": varied}], [x1], (x1, {"y": varied})) == {}
