"""Attention written by hand, the way users write it: its projections become int8 however they are reshaped.

The seed article's SelfAttention (``view(b, -1, h*w)``, exported as a Reshape to ``[1, -1, N]``)
exported by ``attn-deploy export`` and by plain ``torch.onnx.export`` + ``fuse``, and Q/K/V from
one merged projection (a 1×1 conv or a Linear) cut by ``split``/``chunk``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from benchmarks._seed import SeedSelfAttention
from tests.conftest import RunCli, run_ort

SHAPE = (1, 32, 6, 8)


def seed_block() -> nn.Module:
    """The article's block with random weights and a non-zero gamma (at 0 the output is just x)."""
    torch.manual_seed(0)
    block = SeedSelfAttention(SHAPE[1])
    with torch.no_grad():
        block.gamma.fill_(0.7)
    return block.eval()


class MergedConvQKV(nn.Module):
    """SAGAN with one 1×1 conv for Q, K and V, cut by ``split`` after ``view(b, -1, h*w)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.qkv = nn.Conv2d(c, c // 8 * 2 + c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, -1, h * w).split([c // 8, c // 8, c], dim=1)
        attn = torch.softmax(torch.bmm(q.permute(0, 2, 1), k), dim=-1)
        return torch.bmm(v, attn.permute(0, 2, 1)).view(b, c, h, w) + x


class MergedLinearQKV(nn.Module):
    """Tokens through one Linear, ``chunk``ed into Q, K and V."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.view(b, c, h * w).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / c**0.5, dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, c, h, w)


def merged_conv_qkv() -> nn.Module:
    torch.manual_seed(0)
    return MergedConvQKV(SHAPE[1]).eval()


def merged_linear_qkv() -> nn.Module:
    torch.manual_seed(0)
    return MergedLinearQKV(SHAPE[1]).eval()


def _int8_weights(model: onnx.ModelProto) -> set[str]:
    """Initializers that a MatMulInteger reads (the quantized weights), whose activation is
    quantized at run time by DynamicQuantizeLinear."""
    dynamic = {o for n in model.graph.node if n.op_type == "DynamicQuantizeLinear" for o in n.output}
    return {n.input[1] for n in model.graph.node if n.op_type == "MatMulInteger" and n.input[0] in dynamic}


def _quantize(run_cli: RunCli, model: Path, out: Path, *extra: str) -> dict[str, object]:
    code, stdout, stderr = run_cli("quantize", model, "-o", out, "--iterations", "1", "--json", *extra)
    assert code == 0, stderr
    report: dict[str, object] = json.loads(stdout)
    return report


def _assert_parity(report: dict[str, object]) -> None:
    parity = report["parity"]
    assert isinstance(parity, list) and parity and all(p["cosine"] > 0.999 for p in parity), parity


def _torch_export(module: nn.Module, path: Path, dynamo: bool) -> Path:
    x = torch.randn(*SHAPE)
    torch.onnx.export(module, (x,), path, dynamo=dynamo, opset_version=18, input_names=["input"], output_names=["output"])
    return path


@pytest.fixture(scope="module")
def seed_exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from attn_deploy.cli import app

    out = tmp_path_factory.mktemp("seed") / "seed.onnx"
    result = CliRunner().invoke(app, ["export", f"{__name__}:seed_block", "--input-shape", "x".join(map(str, SHAPE)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_seed_block_from_export_has_int8_projections(run_cli: RunCli, tmp_path: Path, seed_exported: Path) -> None:
    exported = onnx.load(seed_exported)
    reshapes = [onnx.numpy_helper.to_array(i).tolist() for i in exported.graph.initializer if i.data_type == onnx.TensorProto.INT64]
    assert [1, -1, SHAPE[2] * SHAPE[3]] in reshapes or any(n.op_type == "Constant" for n in exported.graph.node)
    report = _quantize(run_cli, seed_exported, tmp_path / "q.onnx", "--int8-qk")
    quantized = onnx.load(tmp_path / "q.onnx")
    assert not any(n.op_type == "Conv" for n in quantized.graph.node)
    weights = _int8_weights(quantized)
    merged = report["preparation"]["convs_to_matmul"]  # type: ignore[index]
    assert sorted(c for m in merged for c in m["convs"])  # the three projection convs were rewritten
    assert sum(len(m["convs"]) for m in merged) == 3 and len(weights) == len(merged) >= 1
    _assert_parity(report)


def test_seed_block_default_keeps_query_key_float_when_fused(run_cli: RunCli, tmp_path: Path, seed_exported: Path) -> None:
    report = _quantize(run_cli, seed_exported, tmp_path / "q.onnx")
    fused = any(n.op_type == "FusedAttention" for n in onnx.load(seed_exported).graph.node)
    weights = _int8_weights(onnx.load(tmp_path / "q.onnx"))
    assert len(weights) == 1  # V, or (attention left plain, so no Q/K role known) all three merged
    if fused:
        assert report["nodes"]["quantized"] == ["attn_deploy_proj_1_matmul"]  # type: ignore[index]
    _assert_parity(report)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_seed_block_plain_export_then_fuse(run_cli: RunCli, tmp_path: Path, dynamo: bool) -> None:
    plain = _torch_export(seed_block(), tmp_path / "plain.onnx", dynamo)
    code, _, stderr = run_cli("fuse", plain, "-o", tmp_path / "fused.onnx")
    assert code == 0, stderr
    report = _quantize(run_cli, tmp_path / "fused.onnx", tmp_path / "q.onnx", "--int8-qk")
    quantized = onnx.load(tmp_path / "q.onnx")
    assert report["nodes"]["quantized"] == ["attn_deploy_proj_0_matmul"]  # type: ignore[index]
    assert _int8_weights(quantized) == {"attn_deploy_proj_0_weight_quantized"}
    assert [len(m["convs"]) for m in report["preparation"]["convs_to_matmul"]] == [3]  # type: ignore[index]
    _assert_parity(report)


def test_seed_block_unfused_keys_and_values_are_channel_first(tmp_path: Path) -> None:
    """Without fuse, K and V are read as [B, C, N]: the MatMul is transposed back, exactly."""
    from attn_deploy.quantize.prepare import prepare

    plain = onnx.load(_torch_export(seed_block(), tmp_path / "plain.onnx", dynamo=True))
    prepared, summary = prepare(plain)
    assert [len(convs) for _, convs in summary.conv_matmuls] == [3]
    assert not any(n.op_type == "Conv" for n in prepared.graph.node)
    feeds = {"input": np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)}
    want = seed_block()(torch.from_numpy(feeds["input"])).detach().numpy()
    np.testing.assert_allclose(run_ort(prepared, feeds)[0], want, atol=1e-5, rtol=0)
    other = {"input": feeds["input"] * 2 + 1}  # the output depends on the input
    assert not np.allclose(run_ort(prepared, other)[0], run_ort(prepared, feeds)[0])


@pytest.mark.parametrize("factory", [merged_conv_qkv, merged_linear_qkv], ids=["conv", "linear"])
def test_merged_qkv_projection_is_int8(run_cli: RunCli, tmp_path: Path, factory: object) -> None:
    assert callable(factory)
    plain = _torch_export(factory(), tmp_path / "plain.onnx", dynamo=True)
    report = _quantize(run_cli, plain, tmp_path / "q.onnx", "--int8-qk")
    quantized = onnx.load(tmp_path / "q.onnx")
    assert not any(n.op_type == "Conv" for n in quantized.graph.node)
    weights = _int8_weights(quantized)
    assert len(weights) == 1, weights  # one merged projection, one int8 MatMul
    _assert_parity(report)
