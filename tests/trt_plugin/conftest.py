"""One small ahead-of-time build per test session: a few cubins (sm_80 and sm_90), the kernel library and
its check program, built the way ``attn-deploy build-plugin --kernel-only`` builds them."""

from __future__ import annotations

import shutil

import pytest

from attn_deploy.trt_plugin.aot import Variant
from attn_deploy.trt_plugin.build import PluginBuildOptions, PluginBuildResult, build_plugin
from attn_deploy.trt_plugin.toolchain import find_cuda_include

#: What the CPU tests compile (a full --cuda-arch build is dozens of variants per architecture).
SMALL_VARIANTS = (
    Variant(80, "fp16", False, 64, True, 64, True),
    Variant(90, "fp16", False, 64, True, 64, True),
    Variant(90, "fp16", True, 64, False, 64, False),  # the unaligned, chunked-dk fallback, with a bias
)


@pytest.fixture(scope="session")
def kernel_build(tmp_path_factory: pytest.TempPathFactory) -> PluginBuildResult:
    if shutil.which("cmake") is None or shutil.which("g++") is None:
        pytest.skip("cmake and g++ are needed to build the kernel library")
    if find_cuda_include() is None:
        pytest.skip("no cuda.h (CUDA toolkit or Triton's copy)")
    build_dir = tmp_path_factory.mktemp("kernel_build")
    return build_plugin(PluginBuildOptions(build_dir=build_dir, kernel_only=True, variants=SMALL_VARIANTS, jobs=2))
