"""``attn-deploy lower`` and ``inspect`` from the command line: outputs, manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from attn_deploy.cli import app
from attn_deploy.export import ExportOptions, export_model
from attn_deploy.export.loading import load_model
from tests.conftest import run_ort
from tests.lower.test_lower import _dims, _model

runner = CliRunner()


@pytest.fixture(scope="module")
def sagan_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo:sagan-256 at 1x256x16x16 with dynamic H, W (N = 256 when run at that size)."""
    out = tmp_path_factory.mktemp("export") / "sagan.onnx"
    torch.manual_seed(0)
    export_model(load_model("zoo:sagan-256"), out, ExportOptions(input_shapes=((1, 256, 16, 16),), dynamic_axes=(2, 3)))
    return out


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_lower_writes_model_and_manifest(sagan_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "low.onnx"
    code, stdout, stderr = _run("lower", str(sagan_onnx), "--target", "ort", "-o", str(out))
    assert code == 0, stderr
    assert "FusedAttentionMHA" in stdout
    manifest = json.loads(out.with_suffix(".json").read_text())
    (record,) = manifest["fused_attention"]
    assert record["implementation"] == "mha" and record["op_type"] == "FusedAttentionMHA"
    assert record["dk"] == 32 and record["dv"] == 256
    assert manifest["lowering"] == {"target": "ort", "max_attn_mem": 256 << 20, "impl": "auto"}
    assert manifest["export_dynamic_axes"] == [2, 3]
    x = {"input": np.random.default_rng(0).standard_normal((1, 256, 12, 20), dtype=np.float32)}
    (want,) = run_ort(sagan_onnx, x)
    (got,) = run_ort(out, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_lower_json_and_forced_blocked(sagan_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "blk.onnx"
    code, stdout, stderr = _run("lower", str(sagan_onnx), "-o", str(out), "--impl", "blocked", "--max-attn-mem", "1M", "--json")
    assert code == 0, stderr
    (record,) = json.loads(stdout)["fused_attention"]
    assert record["implementation"] == "blocked" and record["reason"].startswith("forced")
    x = {"input": np.random.default_rng(1).standard_normal((1, 256, 16, 16), dtype=np.float32)}
    np.testing.assert_allclose(run_ort(out, x)[0], run_ort(sagan_onnx, x)[0], rtol=1e-5, atol=1e-5)


def test_inspect_exported_and_lowered(sagan_onnx: Path, tmp_path: Path) -> None:
    code, stdout, stderr = _run("inspect", str(sagan_onnx), "--json")
    assert code == 0, stderr
    (rec,) = json.loads(stdout)
    assert rec["implementation"] == "body" and rec["targets"]["ort"]["implementation"] == "mha"
    assert rec["targets"]["trt"] == "plugin if loaded, else body"  # dk != dv
    assert rec["flops"] is None  # H, W dynamic
    out = tmp_path / "low.onnx"
    assert _run("lower", str(sagan_onnx), "-o", str(out))[0] == 0
    (rec,) = json.loads(_run("inspect", str(out), "--json")[1])
    assert rec["op"] == "attn_deploy.ort::FusedAttentionMHA" and rec["implementation"] == "mha"
    code, table, _ = _run("inspect", str(out))
    assert code == 0 and "mha" in table


def test_inspect_static_counts(tmp_path: Path) -> None:
    out = tmp_path / "s.onnx"
    export_model(load_model("zoo:sagan-256"), out, ExportOptions(input_shapes=((1, 256, 20, 30),)))
    (rec,) = json.loads(_run("inspect", str(out), "--json")[1])
    n = 600
    assert (rec["Nq"], rec["Nk"], rec["score_matrix_bytes"], rec["flops"]) == (n, n, 4 * n * n, 2 * n * n * (32 + 256))
    code, table, _ = _run("inspect", str(out))
    assert code == 0 and "1.4" in table  # 600*600*4 bytes = 1.4 MiB


@pytest.mark.parametrize(
    ("make", "extra", "match"),
    [
        (lambda d: d / "missing.onnx", [], "no such file"),
        (lambda d: (d / "junk.onnx").write_bytes(b"\x00not onnx\xff" * 10) and d / "junk.onnx", [], "is not an ONNX model"),
        ("plain", [], "no FusedAttention node"),
        ("sagan", ["--impl", "fastest"], "unknown --impl"),
        ("sagan", ["--target", "tvm"], "unknown --target"),
        ("fp16", ["--impl", "mha"], "MultiHeadAttention does not apply"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(make, extra, match, sagan_onnx: Path, tmp_path: Path) -> None:  # noqa: ANN001
    if make == "plain":
        src = tmp_path / "plain.onnx"
        g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])], [onnx.helper.make_tensor_value_info("y", 1, [1])])
        onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10), src)
    elif make == "sagan":
        src = sagan_onnx
    elif make == "fp16":
        src = tmp_path / "fp16.onnx"  # MultiHeadAttention's CPU kernel is float32 only
        onnx.save(_model(_dims(1, 1, "N", "N", 8, 8), elem=onnx.TensorProto.FLOAT16), src)
    else:
        src = make(tmp_path)
    out_dir = tmp_path / "out"
    result = runner.invoke(app, ["lower", str(src), "-o", str(out_dir / "o.onnx"), *extra])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], result.stderr
    assert not out_dir.exists() or not list(out_dir.iterdir())


def test_inspect_bad_file(tmp_path: Path) -> None:
    code, _, stderr = _run("inspect", str(tmp_path / "none.onnx"))
    assert code == 2 and stderr.startswith("error:") and "no such file" in stderr


def test_output_must_be_onnx(sagan_onnx: Path, tmp_path: Path) -> None:
    code, _, stderr = _run("lower", str(sagan_onnx), "-o", str(tmp_path / "x.txt"))
    assert code == 2 and "must end in .onnx" in stderr
    code, _, stderr = _run("lower", str(sagan_onnx), "-o", str(tmp_path / "x.onnx"), "--max-attn-mem", "lots")
    assert code == 2 and "256M" in stderr
