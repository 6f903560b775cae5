// The CUDA driver API, opened at run time (dlopen libcuda.so.1) rather than linked: a library that
// links libcuda fails to load on a machine without an NVIDIA driver, and TensorRT-RTX builds engines
// with this plugin on such machines. Only the entry points the launcher and the checks use.
#pragma once

#include <string>

#include <cuda.h>

namespace attn_deploy
{

struct CudaDriver
{
    decltype(&::cuInit) init{nullptr};
    decltype(&::cuGetErrorString) getErrorString{nullptr};
    decltype(&::cuCtxGetCurrent) ctxGetCurrent{nullptr};
    decltype(&::cuCtxGetDevice) ctxGetDevice{nullptr};
    decltype(&::cuCtxSetCurrent) ctxSetCurrent{nullptr};
    decltype(&::cuCtxSynchronize) ctxSynchronize{nullptr};
    decltype(&::cuDeviceGet) deviceGet{nullptr};
    decltype(&::cuDeviceGetName) deviceGetName{nullptr};
    decltype(&::cuDeviceGetAttribute) deviceGetAttribute{nullptr};
    decltype(&::cuDevicePrimaryCtxRetain) devicePrimaryCtxRetain{nullptr};
    decltype(&::cuModuleLoadData) moduleLoadData{nullptr};
    decltype(&::cuModuleGetFunction) moduleGetFunction{nullptr};
    decltype(&::cuFuncSetAttribute) funcSetAttribute{nullptr};
    decltype(&::cuLaunchKernel) launchKernel{nullptr};
    decltype(&::cuMemAlloc) memAlloc{nullptr};
    decltype(&::cuMemFree) memFree{nullptr};
    decltype(&::cuMemcpyHtoD) memcpyHtoD{nullptr};
    decltype(&::cuMemcpyDtoH) memcpyDtoH{nullptr};

    //! "what: CUDA_ERROR_... (description)".
    std::string describe(CUresult status, char const* what) const;
};

//! The driver, opened and initialised once (thread-safe); nullptr with `error` set if unavailable.
CudaDriver const* cudaDriver(std::string* error) noexcept;

} // namespace attn_deploy
