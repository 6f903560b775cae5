"""Finding nvcc and TensorRT on this machine (a CUDA toolkit, the pip nvcc, a TensorRT install)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Where TensorRT is usually installed (tarball, NGC container, Debian packages) when TENSORRT_ROOT is unset.
TENSORRT_SEARCH_ROOTS = (Path("/usr/local/tensorrt"), Path("/opt/tensorrt"), Path("/usr/local/TensorRT"), Path("/usr"))
_INCLUDE_SUFFIXES = ("include", "include/x86_64-linux-gnu", "include/aarch64-linux-gnu")
_LIB_SUFFIXES = ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu", "targets/x86_64-linux/lib")


@dataclass(frozen=True)
class TensorRTInstall:
    """A TensorRT install: its headers and, if present, ``libnvinfer``."""

    root: Path
    include_dir: Path
    nvinfer: Path | None


def _pip_nvcc_candidates() -> list[Path]:
    """nvcc of the ``nvidia-cuda-nvcc`` wheel (``nvidia/cu13/bin`` since CUDA 13, ``nvidia/cuda_nvcc/bin`` before)."""
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        return []
    found = []
    for base in getattr(nvidia, "__path__", []):
        found += sorted(Path(base).glob("cu*/bin/nvcc")) + sorted(Path(base).glob("cuda_nvcc/bin/nvcc"))
    return found


def pip_nvcc() -> Path | None:
    """The ``nvidia-cuda-nvcc`` wheel's nvcc if installed (what ``make install`` brings, via the cuda-build extra)."""
    return next(iter(_pip_nvcc_candidates()), None)


def find_nvcc() -> Path | None:
    """nvcc from ``$CUDACXX``, ``$PATH``, ``$CUDA_HOME``, /usr/local/cuda, or the pip wheel; None if none found.

    Only an nvcc that sits in a toolkit (``bin/../include/cuda_runtime_api.h``) counts: a wrapper
    script on PATH would give the wrong CUDA_HOME and include folder.
    """
    candidates: list[Path] = []
    if os.environ.get("CUDACXX"):
        candidates.append(Path(os.environ["CUDACXX"]))
    if which := shutil.which("nvcc"):
        candidates.append(Path(which))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "bin" / "nvcc")
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    candidates += _pip_nvcc_candidates()
    return next(
        (c for c in candidates
         if c.is_file() and os.access(c, os.X_OK) and (cuda_home(c) / "include" / "cuda_runtime_api.h").is_file()),
        None,
    )


def cuda_home(nvcc: Path) -> Path:
    """The toolkit root of an nvcc (``bin/..``)."""
    return nvcc.resolve().parent.parent


def is_pip_nvcc(nvcc: Path) -> bool:
    """True for the pip wheel's nvcc, whose libraries sit in lib/ (not lib64/, where nvcc.profile looks)."""
    return "site-packages" in nvcc.resolve().parts


def find_tensorrt(root: Path | None = None) -> TensorRTInstall | None:
    """TensorRT under ``root``, else ``$TENSORRT_ROOT``, else the usual install paths; None if no headers."""
    if root is not None:
        roots = [Path(root)]
    elif os.environ.get("TENSORRT_ROOT"):
        roots = [Path(os.environ["TENSORRT_ROOT"])]
    else:
        roots = list(TENSORRT_SEARCH_ROOTS)
    for base in roots:
        include = next((base / s for s in _INCLUDE_SUFFIXES if (base / s / "NvInferRuntime.h").is_file()), None)
        if include is None:
            continue
        nvinfer = next(
            (base / s / n for s in _LIB_SUFFIXES for n in ("libnvinfer.so", "libnvinfer.so.11", "libnvinfer.so.10")
             if (base / s / n).exists()),
            None,
        )
        return TensorRTInstall(base, include, nvinfer)
    return None


def find_cuda_include() -> Path | None:
    """A folder holding ``cuda.h`` (the driver API the plugin calls): the CUDA toolkit's (nvcc's), else the
    copy Triton ships for its own launcher."""
    nvcc = find_nvcc()
    if nvcc is not None and (cuda_home(nvcc) / "include" / "cuda.h").is_file():
        return cuda_home(nvcc) / "include"
    try:
        import triton.backends.nvidia as nvidia_backend
    except ImportError:
        return None
    bundled = Path(nvidia_backend.__file__).parent / "include"
    return bundled if (bundled / "cuda.h").is_file() else None
