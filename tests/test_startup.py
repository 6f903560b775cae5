"""Commands that need no PyTorch do not import it: `inspect` and `fuse` of a small ONNX file start fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.attention_graphs import encoder_block

#: Run the CLI in a fresh interpreter, then list which heavy modules it imported.
_PROBE = """
import runpy, sys
sys.argv = ["attn-deploy", *sys.argv[1:]]
try:
    runpy.run_module("attn_deploy.cli", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print(" ".join(m for m in ("torch", "onnxruntime", "onnx_ir", "sympy", "tensorrt_rtx") if m in sys.modules), file=sys.stderr)
"""


def _heavy_modules(*args: str | Path) -> set[str]:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.strip().splitlines()[-1].split()) if done.stderr.strip() else set()


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "block.onnx"
    onnx.save(encoder_block(), path)
    return path


def test_inspect_imports_neither_torch_nor_onnx_ir(small_onnx: Path) -> None:
    assert not _heavy_modules("inspect", small_onnx) & {"torch", "onnxruntime", "onnx_ir", "sympy", "tensorrt_rtx"}


def test_fuse_does_not_import_torch(small_onnx: Path, tmp_path: Path) -> None:
    assert "torch" not in _heavy_modules("fuse", small_onnx, "-o", tmp_path / "f.onnx", "--always-write")


def test_help_imports_nothing_heavy() -> None:
    assert not _heavy_modules("--help")
