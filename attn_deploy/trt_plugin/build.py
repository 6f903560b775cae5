"""``attn-deploy build-plugin``: compile the kernel's cubins, then build plugins/fused_attention with CMake."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attn_deploy import defaults
from attn_deploy.errors import AttnDeployError, InputError
from attn_deploy.trt_plugin import aot
from attn_deploy.trt_plugin.sources import plugin_dir
from attn_deploy.trt_plugin.toolchain import find_cuda_include, find_tensorrt

DYNAMIC_LIBRARY = "libattn_deploy_fused_attention.so"
STATIC_LIBRARY = "libattn_deploy_fused_attention_static.so"
KERNEL_LIBRARY = "libattn_deploy_fused_attention_kernel.so"
KERNEL_CHECK = "fused_attention_kernel_check"
#: Cubins are cached here inside the build folder, per kernel source and Triton version.
CUBIN_CACHE = "cubins"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PluginBuildOptions:
    """What to build and where. ``cuda_architectures``: SM numbers, e.g. ``"80;86;89;90;100;120"``;
    ``dtypes``: kernel dtypes (fp16, bf16, fp32). ``kernel_only`` skips TensorRT (kernel library
    and check program only). ``variants`` replaces the set ``cuda_architectures`` and ``dtypes`` give
    (tests and experiments compile a few)."""

    build_dir: Path = Path(defaults.PLUGIN_BUILD_DIR)
    source: Path | None = None
    tensorrt_root: Path | None = None
    cuda_architectures: str = defaults.PLUGIN_CUDA_ARCHITECTURES
    build_type: str = defaults.PLUGIN_BUILD_TYPE
    jobs: int = defaults.PLUGIN_JOBS
    dtypes: str = defaults.PLUGIN_DTYPES
    kernel_only: bool = False
    variants: tuple[aot.Variant, ...] | None = None


@dataclass
class PluginBuildResult:
    """Paths of what was built (see CMakeLists.txt), the embedded cubins and the commands that ran.
    ``library``/``static_library``/``tensorrt_root`` are None for a kernel-only build."""

    library: Path | None
    static_library: Path | None
    kernel_library: Path
    kernel_check: Path
    tensorrt_root: Path | None
    cuda_include: Path
    cubins: list[aot.CompiledVariant] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise AttnDeployError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def prepare_cubins(
    build_dir: Path, variants: list[aot.Variant], *, jobs: int = defaults.PLUGIN_JOBS, progress: Progress | None = None,
) -> tuple[Path, list[aot.CompiledVariant]]:
    """Compile (or reuse from ``build_dir/cubins``) the variants and write the C++ table; return its path."""
    if progress:
        progress(f"compiling {len(variants)} kernel variants with Triton ({jobs} processes) ...")
    compiled = aot.compile_variants(variants, Path(build_dir) / CUBIN_CACHE, jobs=jobs, progress=progress)
    return aot.write_embedding(compiled, Path(build_dir)), compiled


def build_plugin(options: PluginBuildOptions, progress: Progress | None = None) -> PluginBuildResult:
    """Compile the cubins, run ``cmake`` configure and build; return where the libraries are.

    Checks the toolchain (cmake, TensorRT unless ``kernel_only``, cuda.h) and the options before
    anything is written.
    """
    source = plugin_dir(options.source)
    if shutil.which("cmake") is None:
        raise InputError("cmake not found on PATH: install CMake 3.18 or newer (apt-get install cmake)")
    trt = None
    if not options.kernel_only:
        trt = find_tensorrt(options.tensorrt_root)
        if trt is None:
            where = options.tensorrt_root or "TENSORRT_ROOT / /usr/local/tensorrt / /opt/tensorrt / /usr"
            raise InputError(
                f"TensorRT headers (NvInferRuntime.h) not found in {where}: pass --tensorrt-root or set TENSORRT_ROOT "
                "to a TensorRT install, or build in plugins/fused_attention/Dockerfile (NVIDIA's TensorRT image)"
            )
        if trt.nvinfer is None:
            raise InputError(f"{trt.root} has TensorRT headers but no libnvinfer: point --tensorrt-root at a full TensorRT install")
    cuda_include = find_cuda_include()
    if cuda_include is None:
        raise InputError("cuda.h not found: install the CUDA toolkit (or set CUDA_HOME), e.g. pip install nvidia-cuda-nvcc")
    variants = list(options.variants) if options.variants is not None else aot.variants_for(
        aot.parse_archs(options.cuda_architectures), aot.parse_dtypes(options.dtypes))
    build_dir = Path(options.build_dir)
    generated, compiled = prepare_cubins(build_dir, variants, jobs=options.jobs, progress=progress)
    configure = [
        "cmake", "-S", str(source), "-B", str(build_dir),
        f"-DFUSED_ATTENTION_CUBINS={generated.resolve()}",
        f"-DFUSED_ATTENTION_CUDA_INCLUDE={cuda_include}",
        f"-DFUSED_ATTENTION_KERNEL_ONLY={'ON' if options.kernel_only else 'OFF'}",
        f"-DCMAKE_BUILD_TYPE={options.build_type}",
    ]
    if trt is not None:
        configure.append(f"-DTENSORRT_ROOT={trt.root}")
    build = ["cmake", "--build", str(build_dir), "-j", str(options.jobs)]
    if progress:
        progress(f"building the plugin with CMake in {build_dir} ...")
    _run(configure, "CMake configure")
    _run(build, "CMake build")
    outputs = [build_dir / KERNEL_LIBRARY, build_dir / KERNEL_CHECK]
    if trt is not None:
        outputs += [build_dir / DYNAMIC_LIBRARY, build_dir / STATIC_LIBRARY]
    missing = [str(p) for p in outputs if not p.is_file()]
    if missing:
        raise AttnDeployError(f"CMake reported success but {', '.join(missing)} is missing")
    return PluginBuildResult(
        library=(build_dir / DYNAMIC_LIBRARY).resolve() if trt else None,
        static_library=(build_dir / STATIC_LIBRARY).resolve() if trt else None,
        kernel_library=(build_dir / KERNEL_LIBRARY).resolve(),
        kernel_check=(build_dir / KERNEL_CHECK).resolve(),
        tensorrt_root=trt.root if trt else None,
        cuda_include=cuda_include,
        cubins=compiled,
        commands=[configure, build],
    )


def build_kernel_check(
    build_dir: Path, cuda_architectures: str, dtypes: str = "fp16,bf16,fp32", *, jobs: int = defaults.PLUGIN_JOBS,
    progress: Progress | None = None,
) -> Path:
    """Build ``fused_attention_kernel_check`` (no TensorRT): ``EXE run`` executes the embedded cubins on the
    current GPU against a float64 CPU reference and prints each case's max relative error."""
    options = PluginBuildOptions(build_dir=Path(build_dir), cuda_architectures=cuda_architectures, jobs=jobs,
                                 dtypes=dtypes, kernel_only=True)
    return build_plugin(options, progress).kernel_check
