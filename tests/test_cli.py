"""The command line: every MODEL form exports; every kind of bad input is one line, exit 2, no output."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
import torch

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.zoo import get_entry
from tests.conftest import RunCli


def _assert_input_error(run_cli: RunCli, tmp_path: Path, args: list[str], *, match: str) -> None:
    out = tmp_path / "out.onnx"
    run_cli("export", *args, "-o", str(out)).assert_error(match)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".onnx", ".json", ".tmp")) == []


def _sagan() -> torch.nn.Module:
    return get_entry("sagan-256").build()


def test_missing_file(run_cli: RunCli, tmp_path: Path) -> None:
    _assert_input_error(run_cli, tmp_path, [str(tmp_path / "nope.pt")], match="no such file")


def test_not_a_model(run_cli: RunCli, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pt"
    bogus.write_text("this is not a model\n")
    _assert_input_error(run_cli, tmp_path, [str(bogus)], match="not a PyTorch model file")


def test_truncated_file(run_cli: RunCli, tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(_sagan().state_dict(), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _assert_input_error(run_cli, tmp_path, [str(cut), "--arch", "zoo:sagan-256"], match="truncated")


def test_input_shape_of_wrong_rank(run_cli: RunCli, tmp_path: Path) -> None:
    _assert_input_error(run_cli, tmp_path, ["zoo:sagan-256", "--input-shape", "1x256x64"], match="rank 3")


def test_unknown_zoo_name(run_cli: RunCli, tmp_path: Path) -> None:
    _assert_input_error(run_cli, tmp_path, ["zoo:resnet-9000"], match="unknown zoo model")


def test_whole_module_pickle_needs_unsafe_load(run_cli: RunCli, tmp_path: Path) -> None:
    pickled = tmp_path / "module.pt"
    torch.save(_sagan(), pickled)
    _assert_input_error(run_cli, tmp_path, [str(pickled)], match="--unsafe-load")
    out = tmp_path / "ok.onnx"
    code, _, stderr = run_cli("export", str(pickled), "--unsafe-load", "--input-shape", "1x256x8x8", "-o", str(out))
    assert code == 0, stderr
    assert len(fused_attention_nodes(onnx.load(out))) == 1


def test_state_dict_needs_arch(run_cli: RunCli, tmp_path: Path) -> None:
    weights = tmp_path / "sagan.pt"
    torch.save(_sagan().state_dict(), weights)
    _assert_input_error(run_cli, tmp_path, [str(weights)], match="--arch")
    out = tmp_path / "ok.onnx"
    code, _, stderr = run_cli("export", str(weights), "--arch", "zoo:sagan-256", "-o", str(out))
    assert code == 0, stderr
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["source_sha256"] and manifest["fused_attention"][0]["Nq"] == 64 * 64


def test_torchscript_archive(run_cli: RunCli, tmp_path: Path) -> None:
    scripted = tmp_path / "sagan.ts"
    torch.jit.trace(_sagan(), torch.randn(1, 256, 8, 8)).save(str(scripted))
    out = tmp_path / "ts.onnx"
    code, _, stderr = run_cli("export", str(scripted), "--input-shape", "1x256x8x8", "-o", str(out))
    assert code == 0, stderr
    assert len(fused_attention_nodes(onnx.load(out))) == 1


def test_torch_export_pt2(run_cli: RunCli, tmp_path: Path) -> None:
    archive = tmp_path / "sagan.pt2"
    torch.export.save(torch.export.export(_sagan(), (torch.randn(1, 256, 8, 8),)), str(archive))
    out = tmp_path / "pt2.onnx"
    code, _, stderr = run_cli("export", str(archive), "-o", str(out), "--json")
    assert code == 0, stderr
    assert json.loads(run_cli("export", str(archive), "-o", str(out), "--json")[1])["export_input_shapes"] == [[1, 256, 8, 8]]


def test_factory_from_the_current_directory(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``attn-deploy export my_models:tiny`` in the folder of ``my_models.py`` imports it, as ``python -m``
    would: the installed console script does not have the current directory on ``sys.path``."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        from attn_deploy.zoo import SelfAttention
        def tiny():
            return SelfAttention(16)
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    before = list(sys.path)
    out = tmp_path / "f.onnx"
    code, _, stderr = run_cli("export", "my_models:tiny", "--input-shape", "1x16x4x4", "-o", str(out))
    assert code == 0, stderr
    assert len(fused_attention_nodes(onnx.load(out))) == 1
    assert sys.path == before
    sys.modules.pop("my_models", None)


def test_factory_rejecting_shape_is_input_error(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models2.py").write_text("from attn_deploy.zoo import SelfAttention\ndef tiny():\n    return SelfAttention(16)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _assert_input_error(run_cli, tmp_path, ["my_models2:tiny", "--input-shape", "1x3x4x4"], match="rejected an input of shape 1x3x4x4")


def test_zoo_list_json(run_cli: RunCli) -> None:
    code, stdout, _ = run_cli("zoo", "list", "--json")
    assert code == 0
    assert "frcnn-r50-fpn-layer4" in {e["name"] for e in json.loads(stdout)}


def test_demo_passes(run_cli: RunCli, tmp_path: Path) -> None:
    code, stdout, stderr = run_cli("demo", "--out-dir", str(tmp_path), "--iterations", "1")
    assert code == 0, stderr
    assert "PASS" in stdout and "ONNX Runtime" in stdout
    assert (tmp_path / "sagan-256.onnx").exists()
