"""``attn-deploy build-plugin``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli.app import err
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import json_flag


@one_line_errors
def build_plugin(
    build_dir: Annotated[Path, typer.Option("--build-dir", help="CMake build folder; the libraries and the cubin cache land here.")] = Path(defaults.PLUGIN_BUILD_DIR),
    tensorrt_root: Annotated[Path | None, typer.Option("--tensorrt-root", help="TensorRT install with include/ and lib/ (default: $TENSORRT_ROOT, then /usr/local/tensorrt, /opt/tensorrt, /usr).")] = None,
    cuda_arch: Annotated[str, typer.Option("--cuda-arch", help="SM architectures to compile the kernel for, e.g. 80;86;89;90;100;120.")] = defaults.PLUGIN_CUDA_ARCHITECTURES,
    dtypes: Annotated[str, typer.Option("--dtypes", help="Kernel dtypes to embed: fp16, bf16, fp32 (comma-separated).")] = defaults.PLUGIN_DTYPES,
    source: Annotated[Path | None, typer.Option("--source", help="plugins/fused_attention of a checkout (default: the one beside this package).")] = None,
    build_type: Annotated[str, typer.Option("--build-type", help="CMAKE_BUILD_TYPE.")] = defaults.PLUGIN_BUILD_TYPE,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Parallel Triton compiles and CMake jobs.")] = defaults.PLUGIN_JOBS,
    kernel_only: Annotated[bool, typer.Option("--kernel-only", help="No TensorRT: build the kernel library and its GPU check program only.")] = False,
    as_json: Annotated[bool, json_flag("Print the library paths as JSON on stdout.")] = False,
) -> None:
    """Compile the attention kernel's cubins with Triton (no GPU needed), then build the TensorRT plugin with CMake."""
    from attn_deploy import api
    from attn_deploy.trt_plugin.build import PluginBuildOptions

    options = PluginBuildOptions(build_dir, source, tensorrt_root, cuda_arch, build_type, jobs, dtypes, kernel_only)
    result = api.build_plugin(options, progress=lambda line: err.print(line, markup=False, highlight=False))
    archs = sorted({c.variant.arch for c in result.cubins})
    if as_json:
        print(json.dumps({
            "library": None if result.library is None else str(result.library),
            "static_library": None if result.static_library is None else str(result.static_library),
            "kernel_library": str(result.kernel_library), "kernel_check": str(result.kernel_check),
            "tensorrt_root": None if result.tensorrt_root is None else str(result.tensorrt_root),
            "cuda_include": str(result.cuda_include), "architectures": archs, "cubins": len(result.cubins),
        }, indent=2))
        return
    err.print(f"{len(result.cubins)} cubins for sm_{', sm_'.join(map(str, archs))} embedded; "
              f"GPU check: {result.kernel_check} run", markup=False, highlight=False)
    if result.library is None:
        print(result.kernel_library)
        return
    err.print(f"built with TensorRT at {result.tensorrt_root}; for dlopen/Polygraphy: {result.static_library}", markup=False, highlight=False)
    print(result.library)
