"""``check --per-attention`` (#15): every attention compared, the first one out of tolerance named with its module.

The model (``attention_models.py``) has three attentions: a SAGAN block calling the op (module
``sagan``), a hand-written one the fuse pass finds (``blocks.0``; its reference is the exported fp32
model in ONNX Runtime) and an SDPA one routed through the op (``blocks.1``). Faults are injected in
one attention's weights; everything is exported with TorchScript at 1x3x16x16 to stay fast.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import attn_deploy.api as ad
from attn_deploy.artifact.attention_outputs import onnx_points
from attn_deploy.check.per_attention import EXPORTED_REFERENCE
from tests.check import attention_models as am
from tests.conftest import RunCli

MODULE = "tests.check.attention_models"
SHAPE = "x".join(map(str, am.SHAPE))
MODULES = ["sagan", "blocks.0", "blocks.1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("per_attention")
    paths = {}
    for name in ("faithful", "broken", "overflowing"):
        artifact = ad.export(getattr(am, name)(), input_shapes=[am.SHAPE], exporter="torchscript")
        paths[name], _ = artifact.save(folder / f"{name}.onnx")
    paths["overflowing-fp16"], _ = ad.to_fp16(paths["overflowing"]).artifact.save(folder / "overflowing.fp16.onnx")
    return paths


def _attention(report: dict) -> dict:
    (comparison,) = report["comparisons"]
    return comparison["attention"]


def test_export_records_each_attentions_module_and_stages_keep_its_tensor(models: dict[str, Path]) -> None:
    exported = ad.load(models["faithful"])
    points = onnx_points(exported)
    assert [(p.module, p.status) for p in points] == [("sagan", "routed"), ("blocks.0", "fused"), ("blocks.1", "routed")]
    tensors = [p.tensor for p in points]
    for stage in (ad.lower(exported).artifact, ad.to_fp16(exported).artifact, ad.quantize_stage(exported).artifact):
        assert [p.tensor for p in onnx_points(stage)] == tensors, stage.manifest.stages
        assert [p.module for p in onnx_points(stage)] == MODULES


def test_faithful_export_passes_with_every_attention_compared(run_cli: RunCli, models: dict[str, Path], tmp_path: Path) -> None:
    report, markdown, junit = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.xml"
    result = run_cli("check", f"{MODULE}:faithful", models["faithful"], "--per-attention", "--input-shape", SHAPE,
                     "--report", report, "--markdown", markdown, "--junit", junit)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    attention = _attention(data)
    assert attention["passed"] and attention["first_failure"] is None
    assert attention["summary"] == "all 3 attentions match"
    rows = attention["attentions"]
    assert [r["module"] for r in rows] == MODULES and all(r["compared"] and r["passed"] for r in rows)
    assert [r["reference"] for r in rows] == ["torch:" + f"{MODULE}:faithful", EXPORTED_REFERENCE, "torch:" + f"{MODULE}:faithful"]
    # The outputs and the attentions depend on the input: a match is not vacuous.
    assert all(o["warning"] is None for o in data["comparisons"][0]["outputs"])
    assert all(r["stats"]["warning"] is None and r["stats"]["max_abs"] < 1e-4 for r in rows)
    cases = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert [c for c in cases if c.startswith("attention")] == [f"attention {m} ({r['node']})" for m, r in zip(MODULES, rows)]
    assert "attention blocks.0 (FusedAttention_0)" in markdown.read_text() and "all 3 attentions match" in markdown.read_text()
    assert "attention blocks.1" in result.stdout and "all 3 attentions match" in result.stdout


def test_a_perturbed_attention_is_named_first(models: dict[str, Path]) -> None:
    report = ad.check(am.faithful(), models["broken"], per_attention=True, input_shapes=[am.SHAPE], backends=("torch", "ort"))
    assert not report.passed
    (comparison,) = report.comparisons
    assert comparison.attention is not None
    first = comparison.attention.first_failure
    assert first is not None and (first.point.module, first.point.status) == ("blocks.1", "routed")
    assert [a.passed for a in comparison.attention.attentions] == [True, True, False]
    assert comparison.attention.summary.startswith("first attention out of tolerance: /blocks/blocks.1/FusedAttention (module blocks.1)")


def test_an_fp16_overflow_is_caught_at_its_attention(run_cli: RunCli, models: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = run_cli("check", models["overflowing"], models["overflowing-fp16"], "--per-attention", "--report", report)
    assert result.exit_code == 1, result.output
    attention = _attention(json.loads(report.read_text()))
    assert attention["first_failure"]["module"] == "blocks.0"
    sagan, hand, _ = attention["attentions"]
    assert sagan["passed"] and sagan["stats"]["tolerance"]["atol"] == 1e-2  # the fp16 preset, from the manifest
    assert not hand["passed"] and hand["stats"]["nonfinite"] > 0


def test_when_only_final_outputs_fail_the_report_says_the_attentions_matched(run_cli: RunCli, models: dict[str, Path], tmp_path: Path) -> None:
    model = onnx.load(models["faithful"])
    head = next(i for i in model.graph.initializer if i.name == "head.bias")
    head.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(head) + 0.01, head.name))
    wrong_head = tmp_path / "head.onnx"
    ad.as_artifact(model).save(wrong_head)
    report = tmp_path / "r.json"
    result = run_cli("check", models["faithful"], wrong_head, "--per-attention", "--report", report)
    assert result.exit_code == 1, result.output
    attention = _attention(json.loads(report.read_text()))
    assert attention["passed"] and attention["summary"] == "all 3 attentions match: the fault is outside the attention"


def test_a_candidate_without_attention_is_refused(run_cli: RunCli, models: dict[str, Path], tmp_path: Path) -> None:
    out = ad.load(models["faithful"]).proto.graph.output[0]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[2, 3], keepdims=0),
         helper.make_node("Tile", ["pooled", "reps"], [out.name])],
        "plain", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, list(am.SHAPE))],
        [helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.array([1, 1], np.int64), "reps")],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), plain)
    run_cli("check", models["faithful"], plain, "--per-attention").assert_error(f"--per-attention: {plain} has no attention node")
