"""The plugin's sources compile: the CUDA kernel with nvcc (pip's, in CI), the TensorRT host code
wherever TensorRT headers are found (TENSORRT_ROOT or the usual paths)."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from attn_deploy.plugin.sources import DEFAULT_PLUGIN_DIR, KERNEL_SOURCE, PLUGIN_SOURCE
from attn_deploy.plugin.toolchain import cuda_home, find_nvcc, find_tensorrt, is_pip_nvcc

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


TRT = find_tensorrt()


@needs_nvcc
@pytest.mark.skipif(TRT is None, reason="TensorRT headers not found (set TENSORRT_ROOT); CI has none, the Docker image does")
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
def test_host_code_compiles_against_tensorrt_headers(kernel_object: tuple[Path, str], tmp_path: Path) -> None:
    """Both library variants compile warning-free; the loadLibrary one links and exports getCreators."""
    assert TRT is not None and NVCC is not None
    cuda = cuda_home(NVCC)
    common = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden",
              "-isystem", str(TRT.include_dir), "-isystem", str(cuda / "include"), "-I", str(DEFAULT_PLUGIN_DIR)]
    objects = {}
    for static in (0, 1):
        objects[static] = tmp_path / f"plugin_{static}.o"
        _run([*common, f"-DATTN_DEPLOY_STATIC_REGISTRATION={static}", "-c", str(DEFAULT_PLUGIN_DIR / PLUGIN_SOURCE),
              "-o", str(objects[static])])
    cudart = next(iter(sorted((cuda / "lib").glob("libcudart.so*")) + sorted((cuda / "lib64").glob("libcudart.so*"))), None)
    if cudart is None:
        pytest.skip(f"no libcudart.so under {cuda}: compiled, not linked")
    library = tmp_path / "libattn_deploy_fused_attention.so"
    _run(["g++", "-shared", "-o", str(library), str(objects[0]), str(kernel_object[0]), str(cudart), "-Wl,--no-undefined",
          f"-Wl,-rpath,{cudart.parent}"])
    exported = _run(["nm", "-D", "--defined-only", str(library)]).stdout if shutil.which("nm") else ""
    assert not exported or {"getCreators", "setLoggerFinder"} <= set(re.findall(r" T (\w+)", exported))
    lib = ctypes.CDLL(str(library))
    count = ctypes.c_int32(-1)
    lib.getCreators.restype = ctypes.c_void_p
    assert lib.getCreators(ctypes.byref(count)) and count.value == 1
