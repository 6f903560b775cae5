"""``attn-deploy build-plugin``: configure and build plugins/fused_attention with CMake."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from attn_deploy.errors import AttnDeployError, InputError
from attn_deploy.trt_plugin.sources import plugin_dir
from attn_deploy.trt_plugin.toolchain import find_nvcc, find_tensorrt, is_pip_nvcc

DYNAMIC_LIBRARY = "libattn_deploy_fused_attention.so"
STATIC_LIBRARY = "libattn_deploy_fused_attention_static.so"


@dataclass(frozen=True)
class PluginBuildOptions:
    """What to build and where. ``cuda_architectures`` is CMake's list, e.g. ``"80;86;89;90"`` or ``"native"``."""

    build_dir: Path = Path("build/plugin")
    source: Path | None = None
    tensorrt_root: Path | None = None
    cuda_architectures: str = "80;86;89;90"
    build_type: str = "Release"
    jobs: int = 2


@dataclass
class PluginBuildResult:
    """Paths of the two libraries (see CMakeLists.txt) and the commands that were run."""

    library: Path
    static_library: Path
    tensorrt_root: Path
    nvcc: Path
    commands: list[list[str]] = field(default_factory=list)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise AttnDeployError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def build_plugin(options: PluginBuildOptions) -> PluginBuildResult:
    """Run ``cmake`` configure and build; return where the libraries are. Checks the toolchain first."""
    source = plugin_dir(options.source)
    if shutil.which("cmake") is None:
        raise InputError("cmake not found on PATH: install CMake 3.18 or newer (apt-get install cmake)")
    trt = find_tensorrt(options.tensorrt_root)
    if trt is None:
        where = options.tensorrt_root or "TENSORRT_ROOT / /usr/local/tensorrt / /opt/tensorrt / /usr"
        raise InputError(
            f"TensorRT headers (NvInferRuntime.h) not found in {where}: pass --tensorrt-root or set TENSORRT_ROOT "
            "to a TensorRT install, or build in plugins/fused_attention/Dockerfile (NVIDIA's TensorRT image)"
        )
    if trt.nvinfer is None:
        raise InputError(f"{trt.root} has TensorRT headers but no libnvinfer: point --tensorrt-root at a full TensorRT install")
    nvcc = find_nvcc()
    if nvcc is None:
        raise InputError("nvcc not found: install the CUDA toolkit (or set CUDACXX / CUDA_HOME), e.g. pip install nvidia-cuda-nvcc")
    build_dir = Path(options.build_dir)
    configure = [
        "cmake", "-S", str(source), "-B", str(build_dir),
        f"-DTENSORRT_ROOT={trt.root}",
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        f"-DCMAKE_CUDA_ARCHITECTURES={options.cuda_architectures}",
        f"-DCMAKE_BUILD_TYPE={options.build_type}",
    ]
    if is_pip_nvcc(nvcc):
        configure.append(f"-DCMAKE_CUDA_FLAGS=-L{nvcc.resolve().parent.parent / 'lib'}")
    build = ["cmake", "--build", str(build_dir), "-j", str(options.jobs)]
    _run(configure, "CMake configure")
    _run(build, "CMake build")
    library, static_library = build_dir / DYNAMIC_LIBRARY, build_dir / STATIC_LIBRARY
    if not library.is_file() or not static_library.is_file():
        raise AttnDeployError(f"CMake reported success but {library} or {static_library} is missing")
    return PluginBuildResult(library.resolve(), static_library.resolve(), trt.root, nvcc, [configure, build])
