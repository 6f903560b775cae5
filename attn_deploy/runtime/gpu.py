"""Is there an NVIDIA GPU this process can use? Asked of the CUDA driver, without importing CUDA."""

from __future__ import annotations

import ctypes
import functools

from attn_deploy.errors import AttnDeployError


@functools.cache
def gpu_available() -> tuple[bool, str]:
    """``(True, "N device(s)")`` or ``(False, why)``; never raises."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False, "no CUDA driver (libcuda.so.1) on this machine"
    if cuda.cuInit(0) != 0:
        return False, "the CUDA driver found no usable device"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return False, "the CUDA driver reports no device"
    return True, f"{count.value} device(s)"


class NoGpuError(AttnDeployError):
    """An engine was asked to run where no NVIDIA GPU is usable (building still works)."""

    exit_code = 1


def require_gpu(what: str) -> None:
    ok, why = gpu_available()
    if not ok:
        raise NoGpuError(
            f"cannot run {what}: {why}. TensorRT engines run only on an NVIDIA GPU; "
            "build-trt still builds them here (TensorRT-RTX, ahead of time); run check/bench on a GPU machine"
        )
