"""``attn-deploy build-plugin`` without TensorRT: one-line errors, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from attn_deploy.trt_plugin.toolchain import find_tensorrt
from tests.conftest import RunCli


def _fake_tensorrt(root: Path, include: str = "include", with_lib: bool = True) -> Path:
    (root / include).mkdir(parents=True)
    (root / include / "NvInferRuntime.h").write_text("// stand-in\n")
    if with_lib:
        (root / "lib").mkdir()
        (root / "lib" / "libnvinfer.so").write_bytes(b"")
    return root


def test_missing_tensorrt_is_an_input_error(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path / "nowhere"))
    out = tmp_path / "build"
    result = run_cli("build-plugin", "--build-dir", str(out))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "TensorRT headers (NvInferRuntime.h) not found" in lines[0] and "--tensorrt-root" in lines[0]
    assert not out.exists()


def test_headers_without_libnvinfer_is_an_input_error(run_cli: RunCli, tmp_path: Path) -> None:
    root = _fake_tensorrt(tmp_path / "trt", with_lib=False)
    result = run_cli("build-plugin", "--tensorrt-root", str(root), "--build-dir", str(tmp_path / "b"))
    assert result.exit_code == 2 and "no libnvinfer" in result.output
    assert not (tmp_path / "b").exists()


def test_wrong_source_folder_is_an_input_error(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("build-plugin", "--source", str(tmp_path), "--build-dir", str(tmp_path / "b"))
    assert result.exit_code == 2 and "--source" in result.output and "CMakeLists.txt" in result.output


def test_find_tensorrt_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = _fake_tensorrt(tmp_path / "tarball")
    found = find_tensorrt(tarball)
    assert found is not None and found.include_dir == tarball / "include" and found.nvinfer == tarball / "lib" / "libnvinfer.so"
    debian = _fake_tensorrt(tmp_path / "usr", include="include/x86_64-linux-gnu", with_lib=False)
    found = find_tensorrt(debian)
    assert found is not None and found.include_dir.name == "x86_64-linux-gnu" and found.nvinfer is None
    monkeypatch.setenv("TENSORRT_ROOT", str(tarball))
    assert find_tensorrt() is not None and find_tensorrt().root == tarball  # type: ignore[union-attr]
    assert find_tensorrt(tmp_path / "empty") is None
