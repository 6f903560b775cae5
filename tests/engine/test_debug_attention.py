"""``build-trt --debug-attention`` (#15): the engine keeps each attention's output, and only those, for
``check --per-attention``. Built here on the CPU with TensorRT-RTX; running needs a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import attn_deploy.api as ad
from attn_deploy.check.per_attention import plan_attention
from attn_deploy.errors import InputError
from attn_deploy.runtime.backends import REGISTRY, Planned, Target
from attn_deploy.runtime.gpu import gpu_available
from tests.check import attention_models as am
from tests.conftest import RunCli

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed (pip install tensorrt-rtx-cu13; `make test` does)")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    artifact = ad.export(am.faithful(), input_shapes=[am.SHAPE], exporter="torchscript")
    path, _ = artifact.save(tmp_path_factory.mktemp("debug_attention") / "m.onnx")
    return path


def _build(run_cli: RunCli, model: Path, engine: Path, *args: str) -> dict:
    result = run_cli("build-trt", model, "-o", engine, "--runtime", "tensorrt-rtx", *args)
    assert result.exit_code == 0, result.output
    report: dict = json.loads(engine.with_name(engine.name + ".json").read_text())
    return report


def test_the_engine_keeps_the_attention_outputs_only_when_asked(run_cli: RunCli, model: Path, tmp_path: Path) -> None:
    finals = [o.name for o in ad.load(model).proto.graph.output]
    plain = _build(run_cli, model, tmp_path / "plain.engine")
    assert plain["network_outputs"] == finals and "debug_attention" not in plain

    debug = _build(run_cli, model, tmp_path / "debug.engine", "--debug-attention")
    kept = debug["debug_attention"]
    assert [k["module"] for k in kept] == ["sagan", "blocks.0", "blocks.1"]
    assert debug["network_outputs"] == finals + [k["tensor"] for k in kept]  # the attentions' outputs, no other tensor
    assert not debug["notes"]

    # Here the engine cannot run: check compares the ORT candidate and skips the engine, saying why.
    report = _check(run_cli, model, tmp_path / "debug.engine", tmp_path)
    if not gpu_available()[0]:
        assert f"trt:{tmp_path / 'debug.engine'}" in [s["backend"] for s in report["skipped"]]


def _check(run_cli: RunCli, model: Path, engine: Path, folder: Path) -> dict:
    lowered, _ = ad.lower(model).artifact.save(folder / "lowered.onnx")
    result = run_cli("check", model, lowered, engine, "--per-attention", "--report", folder / "r.json")
    assert result.exit_code == 0, result.output
    report: dict = json.loads((folder / "r.json").read_text())
    return report


@pytest.mark.skipif(not gpu_available()[0], reason="running a TensorRT engine needs an NVIDIA GPU; the build is tested above")
def test_check_per_attention_compares_the_engines_attentions(run_cli: RunCli, model: Path, tmp_path: Path) -> None:
    engine = tmp_path / "debug.engine"
    _build(run_cli, model, engine, "--debug-attention")
    report = _check(run_cli, model, engine, tmp_path)
    trt = [c for c in report["comparisons"] if c["candidate"].startswith("trt:")]
    assert trt and all(c["attention"]["passed"] and len(c["attention"]["attentions"]) == 3 for c in trt)


def test_an_engine_without_attention_outputs_is_refused(run_cli: RunCli, model: Path, tmp_path: Path) -> None:
    engine = tmp_path / "plain.engine"
    _build(run_cli, model, engine)
    reference = Planned("ort:m.onnx", REGISTRY["ort"], Target("onnx", str(model), artifact=ad.load(model)))
    planned = Planned(f"trt:{engine}", REGISTRY["trt"], Target("engine", str(engine), engine=engine))
    with pytest.raises(InputError, match="rebuild it with `attn-deploy build-trt --debug-attention`"):
        plan_attention([reference, planned], ["input"], [], [], lambda _: Target("onnx", "unused"))


def test_native_attention_keeps_its_output_too(run_cli: RunCli, tmp_path: Path) -> None:
    from attn_deploy.artifact.artifact import Artifact
    from tests.attention_graphs import encoder_block

    path, _ = Artifact.describe(encoder_block(8, 8), source="test", exporter="test").save(tmp_path / "enc.onnx")
    report = _build(run_cli, path, tmp_path / "enc.engine", "--fp16", "--debug-attention")
    assert [n["choice"] for n in report["fused_attention"]] == ["native-attention"]  # marking the output costs no fusion
    assert [a["tensor"] for a in report["debug_attention"]] == ["o"] and report["network_outputs"][-1] == "o"
