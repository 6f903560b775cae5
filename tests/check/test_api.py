"""``api.check`` and ``api.bench`` take models in memory: an nn.Module, an Artifact, a ModelProto."""

from __future__ import annotations

import pytest
import torch

from attn_deploy import api
from attn_deploy.errors import InputError
from attn_deploy.zoo import SelfAttention

SHAPE = (1, 16, 8, 8)


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    module = SelfAttention(16)
    torch.nn.init.constant_(module.gamma, 0.8)
    return module.eval()


def test_check_an_nn_module_against_its_export_in_memory() -> None:
    report = api.check(_module(), backends=("torch", "ort"), input_shapes=[SHAPE])
    assert report.passed, report
    assert report.reference == "torch:SelfAttention"
    assert [c.label for c in report.comparisons] == ["ort:SelfAttention.onnx"]


def test_an_nn_module_needs_input_shapes() -> None:
    with pytest.raises(InputError, match="input shapes"):
        api.check(_module(), backends=("torch", "ort"))


def test_check_and_bench_artifacts_and_model_protos() -> None:
    artifact = api.export(_module(), input_shapes=[SHAPE])
    lowered = api.lower(artifact).artifact
    report = api.check(artifact, lowered.proto, backends=("ort",))
    assert report.passed and len(report.comparisons) == 1
    bench = api.bench(artifact, backends=("ort",), options=None, iterations=1)
    assert [r.backend for r in bench.results] == ["ort"]
    assert bench.results[0].device_peak_mb is None  # PyTorch's allocator cannot see ONNX Runtime's memory
