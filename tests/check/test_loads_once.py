"""One ``check`` / ``demo`` run loads each model once: ONNX files parsed once, PyTorch models loaded once.

Counted by wrapping every parser and loader a run could reach: ``onnx.load*`` (files and bytes),
ONNX Runtime sessions built from a path (a second parse of the file), PyTorch model loading
(``attn_deploy.export.loading.load_model``) and exporting.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import pytest
from typer.testing import CliRunner

from attn_deploy import api
from attn_deploy.cli import app
from attn_deploy.demo import run_demo
from attn_deploy.export import exporter, loading

SHAPE = "1x256x8x8"


def _patch_everywhere(monkeypatch: pytest.MonkeyPatch, original: Callable[..., Any], wrapper: Callable[..., Any]) -> None:
    """Replace ``original`` in its module and wherever an attn_deploy module imported it by name."""
    monkeypatch.setattr(sys.modules[original.__module__], original.__name__, wrapper)
    for name, module in list(sys.modules.items()):
        if name.startswith("attn_deploy") and getattr(module, original.__name__, None) is original:
            monkeypatch.setattr(module, original.__name__, wrapper)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()

    def counting(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return fn(*args, **kwargs)

        wrapper.__name__ = fn.__name__
        return wrapper

    for attr in ("load", "load_model", "load_from_string", "load_model_from_string"):
        monkeypatch.setattr(onnx, attr, counting("onnx parse", getattr(onnx, attr)))
    session = onnxruntime.InferenceSession

    def make_session(model: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(model, (str, os.PathLike)):
            counts["ort session from a path"] += 1
        return session(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", make_session)
    _patch_everywhere(monkeypatch, loading.load_model, counting("pytorch load", loading.load_model))
    _patch_everywhere(monkeypatch, exporter.export_artifact, counting("export", exporter.export_artifact))
    return counts


def test_check_parses_the_onnx_file_once_and_loads_pytorch_once(tmp_path: Path, loads: Counter[str]) -> None:
    exported = tmp_path / "exported.onnx"
    api.export("zoo:sagan-256", input_shapes=[(1, 256, 8, 8)]).save(exported)
    loads.clear()
    result = CliRunner().invoke(app, ["check", "zoo:sagan-256", str(exported), "--input-shape", SHAPE, "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert loads == Counter({"onnx parse": 1, "pytorch load": 1}), loads


def test_check_of_a_pytorch_source_exports_in_memory(loads: Counter[str]) -> None:
    report = api.check("zoo:sagan-256", backends=("torch", "ort"), input_shapes=[(1, 256, 8, 8)])
    assert report.passed and report.comparisons[0].label == "ort:sagan-256.onnx"
    assert loads["pytorch load"] == 1 and loads["export"] == 1 and loads["ort session from a path"] == 0


def test_demo_loads_pytorch_once_and_never_reparses_the_export(tmp_path: Path, loads: Counter[str]) -> None:
    result = run_demo("zoo:sagan-256", tmp_path, iterations=1, min_seconds=0.0)
    assert result.passed and (tmp_path / "sagan-256.onnx").is_file()
    assert loads["pytorch load"] == 1 and loads["export"] == 1, loads
    # An exporter may round-trip its own bytes once; the saved file is never read back.
    assert loads["onnx parse"] <= 1 and loads["ort session from a path"] == 0, loads
