"""The plugin's sources compile: the CUDA kernel with nvcc (pip's, in CI), the TensorRT host code
wherever TensorRT headers are found (TENSORRT_ROOT or the usual paths)."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from attn_deploy.trt_plugin.sources import DEFAULT_PLUGIN_DIR, KERNEL_SOURCE, PLUGIN_SOURCE
from attn_deploy.trt_plugin.tiling_model import broadcast_strides, read_tile_constants
from attn_deploy.trt_plugin.toolchain import cuda_home, find_nvcc, find_tensorrt, is_pip_nvcc, pip_nvcc
from tests.conftest import RunCli

NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (make install adds it: the cuda-build extra, nvidia-cuda-nvcc)")


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def kernel_object(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """fused_attention_kernel.cu compiled once for Turing, Ampere and Hopper, with ptxas statistics."""
    if NVCC is None:
        pytest.skip("nvcc not found (make install adds it: the cuda-build extra, nvidia-cuda-nvcc)")
    obj = tmp_path_factory.mktemp("nvcc") / "fused_attention_kernel.o"
    arches = [arg for sm in (75, 80, 90) for arg in ("-gencode", f"arch=compute_{sm},code=sm_{sm}")]
    proc = _run([str(NVCC), "-std=c++17", "-O3", "-Xcompiler", "-fPIC", "-Xptxas", "-v", *arches,
                 "-c", str(DEFAULT_PLUGIN_DIR / KERNEL_SOURCE), "-o", str(obj)])
    return obj, proc.stdout + proc.stderr


@needs_nvcc
def test_kernel_compiles_for_fp32_and_fp16_without_spills(kernel_object: tuple[Path, str]) -> None:
    obj, log = kernel_object
    assert obj.stat().st_size > 0
    entries = re.findall(r"Compiling entry function '(\w+)' for 'sm_(\d+)'", log)
    assert {sm for _, sm in entries} == {"75", "80", "90"}
    assert any("fusedAttentionKernelIf" in name for name, _ in entries)       # float
    assert any("fusedAttentionKernelI6__half" in name for name, _ in entries)  # half
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert spills and all(s == ("0", "0") for s in spills), log
    if shutil.which("nm"):
        symbols = _run(["nm", "-C", "--defined-only", str(obj)]).stdout
        for name in ("attn_deploy::fusedAttentionForward", "attn_deploy::setBroadcastBiasStrides",
                     "attn_deploy::fusedAttentionSharedBytes", "attn_deploy::fusedAttentionUnsupportedReason"):
            assert name in symbols


PIP_NVCC = pip_nvcc()


@pytest.mark.skipif(PIP_NVCC is None, reason="nvidia-cuda-nvcc not installed (make install adds it: the cuda-build extra)")
@pytest.mark.skipif(PIP_NVCC is not None and NVCC is not None and PIP_NVCC.resolve() == NVCC.resolve(),
                    reason="the pip nvcc is the one the other compile tests use")
def test_pip_nvcc_compiles_the_kernel(tmp_path: Path) -> None:
    """The wheel alone (no CUDA toolkit on the machine) is enough to compile the kernel."""
    assert PIP_NVCC is not None
    obj = tmp_path / "k.o"
    _run([str(PIP_NVCC), "-std=c++17", "-gencode", "arch=compute_80,code=sm_80", "-c",
          str(DEFAULT_PLUGIN_DIR / KERNEL_SOURCE), "-o", str(obj)])
    assert obj.stat().st_size > 0


def test_kernel_source_includes_no_tensorrt() -> None:
    text = (DEFAULT_PLUGIN_DIR / KERNEL_SOURCE).read_text()
    assert "NvInfer" not in text and "torch" not in text


@needs_nvcc
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_builds_the_kernel_library(tmp_path: Path) -> None:
    assert NVCC is not None
    configure = ["cmake", "-S", str(DEFAULT_PLUGIN_DIR), "-B", str(tmp_path), "-DFUSED_ATTENTION_KERNEL_ONLY=ON",
                 "-DCMAKE_CUDA_ARCHITECTURES=80", f"-DCMAKE_CUDA_COMPILER={NVCC}"]
    if is_pip_nvcc(NVCC):
        configure.append(f"-DCMAKE_CUDA_FLAGS=-L{cuda_home(NVCC) / 'lib'}")
    _run(configure)
    _run(["cmake", "--build", str(tmp_path), "-j", "2"])
    assert (tmp_path / "libfused_attention_kernel.a").stat().st_size > 0


def _cudart(cuda: Path) -> Path | None:
    return next(iter(sorted((cuda / "lib").glob("libcudart.so*")) + sorted((cuda / "lib64").glob("libcudart.so*"))), None)


@needs_nvcc
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
def test_kernel_host_functions(kernel_object: tuple[Path, str], tmp_path: Path) -> None:
    """The kernel library's host side (bias strides, limits, launch guards) runs on a machine without a GPU."""
    assert NVCC is not None
    cuda = cuda_home(NVCC)
    cudart = _cudart(cuda)
    if cudart is None:
        pytest.skip(f"no libcudart.so under {cuda}")
    exe = tmp_path / "kernel_host_check"
    _run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(DEFAULT_PLUGIN_DIR), "-isystem", str(cuda / "include"),
          str(DEFAULT_PLUGIN_DIR / "checks" / "kernel_host_check.cpp"), str(kernel_object[0]), str(cudart),
          f"-Wl,-rpath,{cudart.parent}", "-o", str(exe)])
    full = (2, 3, 37, 45)
    for shape in [(45,), (37, 45), (1, 3, 1, 45), (2, 1, 37, 45), (2, 3, 37, 45), (3, 1, 1), (2, 3, 37, 1), (1,), (), (44,), (2, 2, 37, 45)]:
        got = _run([str(exe), "strides", *map(str, full), *map(str, shape)]).stdout.strip()
        try:
            want = " ".join(map(str, broadcast_strides(shape, full)))
        except ValueError:
            want = "reject"
        assert got == want, f"bias {shape}: C++ {got!r}, NumPy model {want!r}"
    limits = _run([str(exe), "limits"]).stdout
    tiles = read_tile_constants()
    sagan = re.search(r"dk=32 dv=256 shared=(\d+) reason=none", limits)
    assert sagan and int(sagan.group(1)) == 4 * (tiles.block_q * 33 + tiles.block_k * 257 + tiles.block_q * (tiles.block_k + 1))
    assert int(sagan.group(1)) <= 48 * 1024  # SAGAN heads fit the default shared memory (no opt-in needed)
    assert re.search(r"dk=256 dv=256 shared=\d+ reason=none", limits)
    for bad in ("dk=0 dv=8", "dk=257 dv=8", "dk=8 dv=257"):
        assert re.search(bad + r" shared=\d+ reason=FusedAttention plugin: d[kv]", limits), limits
    assert "launch dk=300: invalid" in limits and "launch null pointers: invalid" in limits


TRT = find_tensorrt()
needs_trt = pytest.mark.skipif(TRT is None, reason="TensorRT headers not found (set TENSORRT_ROOT); CI has none, the Docker image does")


@pytest.fixture(scope="module")
def plugin_library(kernel_object: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both library variants compiled warning-free against TensorRT's headers; the loadLibrary one linked."""
    if TRT is None or NVCC is None or shutil.which("g++") is None:
        pytest.skip("needs TensorRT headers, nvcc and g++")
    tmp = tmp_path_factory.mktemp("plugin")
    cuda = cuda_home(NVCC)
    common = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden",
              "-isystem", str(TRT.include_dir), "-isystem", str(cuda / "include"), "-I", str(DEFAULT_PLUGIN_DIR)]
    objects = {}
    for static in (0, 1):
        objects[static] = tmp / f"plugin_{static}.o"
        _run([*common, f"-DATTN_DEPLOY_STATIC_REGISTRATION={static}", "-c", str(DEFAULT_PLUGIN_DIR / PLUGIN_SOURCE),
              "-o", str(objects[static])])
    cudart = _cudart(cuda)
    if cudart is None:
        pytest.skip(f"no libcudart.so under {cuda}: compiled, not linked")
    library = tmp / "libattn_deploy_fused_attention.so"
    _run(["g++", "-shared", "-o", str(library), str(objects[0]), str(kernel_object[0]), str(cudart), "-Wl,--no-undefined",
          f"-Wl,-rpath,{cudart.parent}"])
    return library


@needs_nvcc
@needs_trt
def test_host_code_compiles_against_tensorrt_headers(plugin_library: Path) -> None:
    if shutil.which("nm"):
        exported = set(re.findall(r" T (\w+)", _run(["nm", "-D", "--defined-only", str(plugin_library)]).stdout))
        assert {"getCreators", "setLoggerFinder"} <= exported
    lib = ctypes.CDLL(str(plugin_library))
    count = ctypes.c_int32(-1)
    lib.getCreators.restype = ctypes.c_void_p
    assert lib.getCreators(ctypes.byref(count)) and count.value == 1


@pytest.fixture(scope="module")
def host_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checks/plugin_host_check.cpp: drives a plugin library through TensorRT's interfaces (no libnvinfer, no GPU)."""
    if TRT is None or NVCC is None or shutil.which("g++") is None:
        pytest.skip("needs TensorRT headers, nvcc and g++")
    exe = tmp_path_factory.mktemp("host_check") / "plugin_host_check"
    _run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-isystem", str(TRT.include_dir),
          "-isystem", str(cuda_home(NVCC) / "include"),
          str(DEFAULT_PLUGIN_DIR / "checks" / "plugin_host_check.cpp"), "-ldl", "-o", str(exe)])
    return exe


def _host_check_passes(exe: Path, library: Path) -> None:
    proc = subprocess.run([str(exe), str(library)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "0 failure(s)" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.count("ok  ") >= 30


@needs_nvcc
@needs_trt
def test_plugin_through_tensorrt_interfaces(plugin_library: Path, host_check: Path) -> None:
    """Creator and plugin driven through IPluginCreatorV3One / IPluginV3One* (no libnvinfer, no GPU)."""
    _host_check_passes(host_check, plugin_library)


@needs_nvcc
@needs_trt
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_build_plugin_command_end_to_end(run_cli: RunCli, host_check: Path, tmp_path: Path) -> None:
    """``attn-deploy build-plugin`` runs CMake for both libraries; the loadLibrary one passes the host check.

    Where the TensorRT install has headers only (no libnvinfer: read for the purpose), a stub
    libnvinfer built here stands in at link time; nothing loads it in this test.
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
    result = run_cli("build-plugin", "--tensorrt-root", str(root), "--build-dir", str(build), "--cuda-arch", "80", "--json")
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)
    assert Path(paths["library"]) == (build / "libattn_deploy_fused_attention.so").resolve()
    assert Path(paths["static_library"]).is_file()
    _host_check_passes(host_check, Path(paths["library"]))


@needs_nvcc
@needs_trt
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
