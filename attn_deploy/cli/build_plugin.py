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
    build_dir: Annotated[Path, typer.Option("--build-dir", help="CMake build folder; the libraries land here.")] = Path(defaults.PLUGIN_BUILD_DIR),
    tensorrt_root: Annotated[Path | None, typer.Option("--tensorrt-root", help="TensorRT install with include/ and lib/ (default: $TENSORRT_ROOT, then /usr/local/tensorrt, /opt/tensorrt, /usr).")] = None,
    cuda_arch: Annotated[str, typer.Option("--cuda-arch", help="CMAKE_CUDA_ARCHITECTURES, e.g. 80;86;89;90 or native.")] = defaults.PLUGIN_CUDA_ARCHITECTURES,
    source: Annotated[Path | None, typer.Option("--source", help="plugins/fused_attention of a checkout (default: the one beside this package).")] = None,
    build_type: Annotated[str, typer.Option("--build-type", help="CMAKE_BUILD_TYPE.")] = defaults.PLUGIN_BUILD_TYPE,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Parallel compile jobs.")] = defaults.PLUGIN_JOBS,
    as_json: Annotated[bool, json_flag("Print the library paths as JSON on stdout.")] = False,
) -> None:
    """Build the FusedAttention TensorRT plugin (C++/CUDA) with CMake and print the library path."""
    from attn_deploy import api
    from attn_deploy.trt_plugin.build import PluginBuildOptions

    with err.status("building the FusedAttention plugin ..."):
        result = api.build_plugin(PluginBuildOptions(build_dir, source, tensorrt_root, cuda_arch, build_type, jobs))
    if as_json:
        print(json.dumps({
            "library": str(result.library), "static_library": str(result.static_library),
            "tensorrt_root": str(result.tensorrt_root), "nvcc": str(result.nvcc),
        }, indent=2))
        return
    err.print(f"built with TensorRT at {result.tensorrt_root} and {result.nvcc}; for dlopen/Polygraphy: {result.static_library}")
    print(result.library)
