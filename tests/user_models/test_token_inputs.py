"""A BERT-like encoder with int64 ``input_ids`` and ``attention_mask``: export, check, quantize and bench through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_deploy.api import load
from attn_deploy.runtime import OrtRunner
from attn_deploy.runtime.inputs import input_specs, random_feeds
from tests.conftest import RunCli
from tests.user_models.models import VOCAB, TinyBert, tiny_bert

MODEL = "tests.user_models.models:tiny_bert"
INPUTS = ("--input", "input_ids:1x16:int64", "--input", "attention_mask:1x16:int64")


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from attn_deploy.cli import app

    out = tmp_path_factory.mktemp("bert") / "bert.onnx"
    result = CliRunner().invoke(app, ["export", MODEL, *INPUTS, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


def test_export_keeps_names_and_dtypes(bert_onnx: Path) -> None:
    manifest = json.loads(bert_onnx.with_suffix(".json").read_text())
    assert [(i["name"], i["dtype"], i["shape"]) for i in manifest["inputs"]] == [
        ("input_ids", "int64", [1, 16]), ("attention_mask", "int64", [1, 16])
    ]
    assert len(manifest["fused_attention"]) == 2 and "detection" not in manifest


def test_inputs_are_token_ids_in_range_and_the_output_depends_on_them(bert_onnx: Path) -> None:
    specs = input_specs(load(bert_onnx))
    assert [(s.name, s.high) for s in specs] == [("input_ids", VOCAB), ("attention_mask", None)]
    a, b = random_feeds(specs, 0, None, None), random_feeds(specs, 1, None, None)
    assert a["input_ids"].max() < VOCAB and (a["attention_mask"] == 1).all()
    runner = OrtRunner(bert_onnx)
    out_a, out_b = runner.infer(a), runner.infer(b)
    ((name, ya),) = out_a.items()
    assert np.abs(ya - out_b[name]).max() > 0.1  # different tokens, different hidden states
    masked = dict(a, attention_mask=np.concatenate([np.ones((1, 8), np.int64), np.zeros((1, 8), np.int64)], axis=1))
    assert np.abs(runner.infer(masked)[name][:, :8] - ya[:, :8]).max() > 1e-3  # the mask is used
    with torch.no_grad():
        want = tiny_bert()(torch.from_numpy(a["input_ids"]), torch.from_numpy(a["attention_mask"])).numpy()
    np.testing.assert_allclose(ya, want, atol=1e-4)


def test_check_against_pytorch(run_cli: RunCli, bert_onnx: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    code, _, stderr = run_cli("check", MODEL, str(bert_onnx), *INPUTS, "--backends", "torch,ort", "--report", str(report))
    assert code == 0, stderr
    data = json.loads(report.read_text())
    assert [(i["name"], i["dtype"]) for i in data["inputs"]] == [("input_ids", "int64"), ("attention_mask", "int64")]
    assert all(c["passed"] for c in data["comparisons"]) and len(data["comparisons"]) == 1


def test_quantize_a_model_with_token_inputs(run_cli: RunCli, tmp_path: Path) -> None:
    out, report = tmp_path / "int8.onnx", tmp_path / "q.json"
    code, _, stderr = run_cli("quantize", MODEL, *INPUTS, "-o", str(out), "--iterations", "1", "--report", str(report))
    assert code == 0, stderr
    data = json.loads(report.read_text())
    assert data["parity"] and data["parity"][0]["cosine"] > 0.99, data["warnings"]
    assert not any("symbolic" in w or "skipped" in w for w in data["warnings"])
    assert len(data["nodes"]["quantized"]) == 8  # 2 layers x (qkv, proj, 2 MLP)


def test_bench_with_token_inputs(run_cli: RunCli, bert_onnx: Path) -> None:
    code, stdout, stderr = run_cli("bench", str(bert_onnx), "--backends", "ort", "--iterations", "2", "--min-seconds", "0", "--warmup", "0", "--json")
    assert code == 0, stderr
    (result,) = json.loads(stdout)["results"]
    assert result["backend"].startswith("ort") and len(result["samples_s"]) >= 2


def test_npz_example_inputs_and_pt2_dtypes(run_cli: RunCli, tmp_path: Path) -> None:
    ids = np.random.default_rng(0).integers(0, VOCAB, (1, 12)).astype(np.int64)
    examples = tmp_path / "examples.npz"
    np.savez(examples, input_ids=ids, attention_mask=np.ones((1, 12), np.int64))
    code, stdout, stderr = run_cli("check", MODEL, "--input", str(examples), "--data", str(examples), "--backends", "torch,ort", "--json")
    assert code == 0, stderr
    assert [i["shape"] for i in json.loads(stdout)["inputs"]] == [[1, 12], [1, 12]]

    archive = tmp_path / "bert.pt2"
    model: TinyBert = tiny_bert()  # type: ignore[assignment]
    torch.export.save(torch.export.export(model, (torch.from_numpy(ids), torch.ones(1, 12, dtype=torch.int64))), archive)
    code, stdout, stderr = run_cli("export", str(archive), "-o", str(tmp_path / "pt2.onnx"), "--input-names", "input_ids,attention_mask", "--json")
    assert code == 0, stderr
    assert [(i["name"], i["dtype"]) for i in json.loads(stdout)["inputs"]] == [("input_ids", "int64"), ("attention_mask", "int64")]
