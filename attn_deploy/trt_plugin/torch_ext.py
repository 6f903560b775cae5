"""The plugin's CUDA kernel as a PyTorch extension (JIT-built with ``torch.utils.cpp_extension.load``).

Lets the kernel be checked against ``torch.ops.attn_deploy.fused_attention`` on any NVIDIA GPU,
without TensorRT. Needs a GPU to run and nvcc to build (the pip nvcc works: CUDA_HOME is pointed
at it when unset).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType

from attn_deploy.errors import InputError
from attn_deploy.trt_plugin.sources import KERNEL_SOURCE, TORCH_BINDING, plugin_dir
from attn_deploy.trt_plugin.toolchain import cuda_home, find_nvcc, is_pip_nvcc

EXTENSION_NAME = "attn_deploy_fused_attention_ext"


def load_torch_extension(build_dir: Path | None = None, *, source: Path | None = None, verbose: bool = False) -> ModuleType:
    """Build (cached by torch) and import the extension; its ``fused_attention(q, k, v, bias, scale)`` runs the kernel."""
    import torch

    folder = plugin_dir(source)
    nvcc = find_nvcc()
    if nvcc is None:
        raise InputError("nvcc not found: install the CUDA toolkit or pip install nvidia-cuda-nvcc (the `cuda-build` extra)")
    home = cuda_home(nvcc)
    os.environ.setdefault("CUDA_HOME", str(home))
    from torch.utils import cpp_extension

    if not (Path(cpp_extension.CUDA_HOME or "") / "include" / "cuda_runtime_api.h").is_file():
        # torch guessed CUDA_HOME from a wrapper script on PATH (e.g. /usr/local/bin/nvcc): use the real toolkit.
        cpp_extension.CUDA_HOME = str(home)
    if not torch.cuda.is_available():
        # No device to read the architecture from: compile-only (e.g. to check the binding builds).
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0")
    if build_dir is not None:
        Path(build_dir).mkdir(parents=True, exist_ok=True)
    extra_ldflags = _pip_cudart_flags(home, Path(build_dir or tempfile.gettempdir())) if is_pip_nvcc(nvcc) else []
    extension: ModuleType = cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(folder / TORCH_BINDING), str(folder / KERNEL_SOURCE)],
        extra_include_paths=[str(folder)],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3"],
        extra_ldflags=extra_ldflags,
        build_directory=None if build_dir is None else str(build_dir),
        verbose=verbose,
        with_cuda=bool(torch.version.cuda),
    )
    return extension


def _pip_cudart_flags(home: Path, scratch: Path) -> list[str]:
    """Linker flags for the pip CUDA runtime, which ships libcudart.so.13 but no libcudart.so for ``-lcudart``."""
    versioned = sorted((home / "lib").glob("libcudart.so.*"))
    if not versioned:
        return [f"-L{home / 'lib'}"]
    link_dir = scratch / "cudart-link"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libcudart.so"
    if not link.exists():
        link.symlink_to(versioned[0])
    return [f"-L{link_dir}", f"-Wl,-rpath,{home / 'lib'}"]
