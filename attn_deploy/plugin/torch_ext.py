"""The plugin's CUDA kernel as a PyTorch extension (JIT-built with ``torch.utils.cpp_extension.load``).

Lets the kernel be checked against ``torch.ops.attn_deploy.fused_attention`` on any NVIDIA GPU,
without TensorRT. Needs a GPU to run and nvcc to build (the pip nvcc works: CUDA_HOME is pointed
at it when unset).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from attn_deploy.errors import InputError
from attn_deploy.plugin.sources import KERNEL_SOURCE, TORCH_BINDING, plugin_dir
from attn_deploy.plugin.toolchain import cuda_home, find_nvcc, is_pip_nvcc

EXTENSION_NAME = "attn_deploy_fused_attention_ext"


def load_torch_extension(build_dir: Path | None = None, *, source: Path | None = None, verbose: bool = False) -> ModuleType:
    """Build (cached by torch) and import the extension; its ``fused_attention(q, k, v, bias, scale)`` runs the kernel."""
    import torch
    from torch.utils import cpp_extension

    folder = plugin_dir(source)
    nvcc = find_nvcc()
    if nvcc is None:
        raise InputError("nvcc not found: install the CUDA toolkit or pip install nvidia-cuda-nvcc (the `cuda-build` extra)")
    os.environ.setdefault("CUDA_HOME", str(cuda_home(nvcc)))
    extra_ldflags = [f"-L{cuda_home(nvcc) / 'lib'}"] if is_pip_nvcc(nvcc) else []
    if build_dir is not None:
        Path(build_dir).mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
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
