"""The plugin's C++ against TensorRT's headers, wherever they are found (TENSORRT_ROOT or the usual paths):
compiled warning-free with the session's embedded cubins, linked, driven through TensorRT's interfaces,
built by ``build-plugin``, and loaded into TensorRT-RTX's registry. CI has no TensorRT headers (no
registry ships them): there these skip and test_aot.py covers the kernel library."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from attn_deploy.trt_plugin.aot import GENERATED_SOURCE
from attn_deploy.trt_plugin.build import PluginBuildOptions, PluginBuildResult, build_plugin
from attn_deploy.trt_plugin.sources import DEFAULT_PLUGIN_DIR, KERNEL_SOURCE, PLUGIN_SOURCE
from attn_deploy.trt_plugin.toolchain import find_cuda_include, find_tensorrt
from tests.trt_plugin.conftest import SMALL_VARIANTS

TRT = find_tensorrt()
pytestmark = pytest.mark.skipif(TRT is None, reason="TensorRT headers not found (set TENSORRT_ROOT); CI has none, the Docker image does")


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def plugin_library(kernel_build: PluginBuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both library variants compiled with -Wall -Wextra -Werror against TensorRT's headers; the loadLibrary one
    linked with the launcher and the session's embedded cubins."""
    include = find_cuda_include()
    assert TRT is not None and include is not None
    tmp = tmp_path_factory.mktemp("plugin")
    common = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden",
              "-isystem", str(TRT.include_dir), "-isystem", str(include), "-I", str(DEFAULT_PLUGIN_DIR)]
    objects = {}
    for static in (0, 1):
        objects[static] = tmp / f"plugin_{static}.o"
        _run([*common, f"-DATTN_DEPLOY_STATIC_REGISTRATION={static}", "-c", str(DEFAULT_PLUGIN_DIR / PLUGIN_SOURCE),
              "-o", str(objects[static])])
    table = kernel_build.kernel_library.parent / GENERATED_SOURCE
    library = tmp / "libattn_deploy_fused_attention.so"
    _run([*common, "-shared", "-o", str(library), str(objects[0]), str(DEFAULT_PLUGIN_DIR / KERNEL_SOURCE),
          str(DEFAULT_PLUGIN_DIR / "cuda_driver.cpp"), str(table), "-ldl", "-Wl,--no-undefined"])
    return library


def test_plugin_library_exports_creators_and_the_cubin_table(plugin_library: Path) -> None:
    if shutil.which("nm"):
        exported = set(re.findall(r" T (\w+)", _run(["nm", "-D", "--defined-only", str(plugin_library)]).stdout))
        assert {"getCreators", "setLoggerFinder", "attn_deploy_fused_attention_cubin_table"} <= exported
    lib = ctypes.CDLL(str(plugin_library))
    count = ctypes.c_int32(-1)
    lib.getCreators.restype = ctypes.c_void_p
    assert lib.getCreators(ctypes.byref(count)) and count.value == 1
    lib.attn_deploy_fused_attention_cubin_table.restype = ctypes.c_char_p
    table = json.loads(lib.attn_deploy_fused_attention_cubin_table())
    assert [row["key"] for row in table] == [v.key for v in SMALL_VARIANTS]


@pytest.fixture(scope="module")
def host_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checks/plugin_host_check.cpp: drives a plugin library through TensorRT's interfaces (no libnvinfer, no GPU)."""
    include = find_cuda_include()
    assert TRT is not None and include is not None
    exe = tmp_path_factory.mktemp("host_check") / "plugin_host_check"
    _run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-isystem", str(TRT.include_dir), "-isystem", str(include),
          str(DEFAULT_PLUGIN_DIR / "checks" / "plugin_host_check.cpp"), "-ldl", "-o", str(exe)])
    return exe


def _host_check_passes(exe: Path, library: Path) -> None:
    proc = subprocess.run([str(exe), str(library)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "0 failure(s)" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.count("ok  ") >= 30


def test_plugin_through_tensorrt_interfaces(plugin_library: Path, host_check: Path) -> None:
    """Creator and plugin driven through IPluginCreatorV3One / IPluginV3One* (no libnvinfer, no GPU)."""
    _host_check_passes(host_check, plugin_library)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_build_plugin_end_to_end(kernel_build: PluginBuildResult, host_check: Path, tmp_path: Path) -> None:
    """``build_plugin`` (what ``attn-deploy build-plugin`` runs) builds every library with CMake from the
    session's cached cubins; the loadLibrary one passes the host check.

    Where the TensorRT install has headers only (no libnvinfer), a stub libnvinfer built here stands in
    at link time; nothing loads it in this test.
    """
    assert TRT is not None
    root = TRT.root
    if TRT.nvinfer is None:
        root = tmp_path / "trt"
        (root / "lib").mkdir(parents=True)
        (root / "include").symlink_to(TRT.include_dir)
        stub = tmp_path / "stub.cpp"
        stub.write_text('extern "C" void* getPluginRegistry() noexcept { return nullptr; }\n')
        _run(["g++", "-shared", "-fPIC", str(stub), "-o", str(root / "lib" / "libnvinfer.so")])
    build = tmp_path / "build"
    shutil.copytree(kernel_build.cubins[0].cubin.parent.parent, build / "cubins")  # the session's compiled cubins
    lines: list[str] = []
    result = build_plugin(PluginBuildOptions(build_dir=build, tensorrt_root=root, variants=SMALL_VARIANTS), lines.append)
    assert result.library == (build / "libattn_deploy_fused_attention.so").resolve()
    assert result.static_library is not None and result.static_library.is_file()
    assert any("cubins cached" in line for line in lines) and not any(line.startswith("compiled") for line in lines)
    _host_check_passes(host_check, result.library)


def test_tensorrt_rtx_registry_loads_the_library(plugin_library: Path) -> None:
    """A real TensorRT registry (TensorRT-RTX, CPU-only install) loads the library and creates the plugin.

    TensorRT-RTX 1.7's ONNX parser aborts (std::terminate) right after creating any IPluginV3 from
    the registry on a machine without a GPU, a minimal Python plugin included, so no engine is built here.
    """
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx not installed (the `trt` extra)")
    import numpy as np

    registry = trt.get_plugin_registry()
    if registry.get_creator("FusedAttention", "1", "attn_deploy") is None:
        assert registry.load_library(str(plugin_library))
    creator = registry.get_creator("FusedAttention", "1", "attn_deploy")
    assert isinstance(creator, trt.IPluginCreatorV3One)
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == ("FusedAttention", "1", "attn_deploy")
    assert [f.name for f in creator.field_names] == ["scale"]
    fields = trt.PluginFieldCollection([trt.PluginField("scale", np.array([0.125], np.float32), trt.PluginFieldType.FLOAT32)])
    assert creator.create_plugin("fa", fields, trt.TensorRTPhase.BUILD) is not None
    assert creator.create_plugin("fa", trt.PluginFieldCollection([]), trt.TensorRTPhase.BUILD) is None
