"""The backend registry and runner lifecycles, on tiny models built in code."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.runtime.backends import REGISTRY, Target, plan_runners
from attn_deploy.runtime.ort_runner import OrtRunner
from attn_deploy.runtime.precision import artifact_precision
from attn_deploy.runtime.torch_runner import TorchRunner
from attn_deploy.runtime.triton_runner import TritonRunner
from attn_deploy.runtime.trt_runner import TrtRunner


def _matmul(batch: int | str = 2, weight: type[np.floating] = np.float32) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.eye(3, dtype=weight), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _artifact(model: onnx.ModelProto) -> Artifact:
    return Artifact.describe(model, source="test", exporter="unknown")


def test_one_name_per_backend() -> None:
    assert tuple(REGISTRY) == (*defaults.BACKENDS, "triton")  # a served model is never a default backend
    assert (TorchRunner.name, OrtRunner.name, TrtRunner.name, TritonRunner.name) == tuple(REGISTRY)


def test_plan_skips_with_reasons() -> None:
    targets = [Target("onnx", "m.onnx", artifact=_artifact(_matmul()))]
    planned, skipped = plan_runners(targets, defaults.BACKENDS)
    assert [p.label for p in planned] == ["ort:m.onnx"]
    assert [s.label for s in skipped] == ["torch", "trt"]
    assert "not a PyTorch model" in skipped[0].reason and "build-trt" in skipped[1].reason


def test_ort_runner_is_a_context_manager_over_an_artifact_in_memory() -> None:
    runner = OrtRunner(_artifact(_matmul()))
    assert not runner.is_active
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with runner as active:
        assert active is runner and runner.is_active
        np.testing.assert_array_equal(runner.infer({"x": x})["y"], x)
    assert not runner.is_active
    np.testing.assert_array_equal(runner.infer({"x": x})["y"], x)  # outside `with`: activates on first use
    runner.close()


def test_batch_rule_and_precision_come_from_the_registry() -> None:
    static, dynamic = (Target("onnx", "m.onnx", artifact=_artifact(_matmul(b))) for b in (2, "N"))
    assert "static batch of 2" in (REGISTRY["ort"].batch_limit(static, 4) or "")
    assert REGISTRY["ort"].batch_limit(dynamic, 4) is None
    assert REGISTRY["torch"].precision(Target("pytorch", "zoo:x")).precision == "fp32"
    fp16 = _artifact(_matmul(weight=np.float16))
    unstamped = artifact_precision(fp16)  # no manifest from a stage: the strict preset, and why
    assert unstamped.precision == "fp32" and "looks fp16" in (unstamped.note or "")
    stamped = Artifact(fp16.proto, fp16.manifest.replace(stages=["fp16"], precision="fp16"))
    assert artifact_precision(stamped).precision == "fp16"  # a stage's manifest is believed


@pytest.mark.parametrize("kind", ["pytorch", "onnx", "engine", "endpoint"])
def test_every_kind_has_a_backend(kind: str) -> None:
    assert [b.name for b in REGISTRY.values() if b.runs == kind]


def test_triton_endpoint_options() -> None:
    from attn_deploy.errors import InputError
    from attn_deploy.package.server import free_port
    from attn_deploy.runtime.workload import WorkloadOptions, _triton_target

    assert _triton_target(WorkloadOptions(backends=("torch", "triton"))) == []  # planned as skipped: "no --triton-url ..."
    (target,) = _triton_target(WorkloadOptions(backends=("triton",), triton_url="http://h:1", triton_model="m"))
    assert target.kind == "endpoint" and target.endpoint == ("http://h:1", "m") and target.name == "http://h:1/v2/models/m"
    with pytest.raises(InputError, match="need triton in --backends"):
        _triton_target(WorkloadOptions(backends=("torch",), triton_model="m"))
    with pytest.raises(InputError, match="give --triton-model"):
        _triton_target(WorkloadOptions(backends=("triton",), triton_url="http://h:1"))
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (the serve extra)")
    with pytest.raises(InputError, match="cannot reach Triton"):
        TritonRunner(f"http://127.0.0.1:{free_port()}", "m").activate()
