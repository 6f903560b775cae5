#include "cuda_driver.h"

#include <dlfcn.h>

#include <mutex>

namespace attn_deploy
{

std::string CudaDriver::describe(CUresult status, char const* what) const
{
    char const* text = nullptr;
    if (getErrorString == nullptr || getErrorString(status, &text) != CUDA_SUCCESS || text == nullptr)
    {
        text = "unknown error";
    }
    return std::string(what) + ": CUDA error " + std::to_string(static_cast<int>(status)) + " (" + text + ")";
}

namespace
{

template <typename F>
bool bind(void* handle, F& field, char const* symbol, std::string& missing)
{
    field = reinterpret_cast<F>(dlsym(handle, symbol));
    if (field == nullptr)
    {
        missing += missing.empty() ? symbol : std::string(", ") + symbol;
    }
    return field != nullptr;
}

std::string openDriver(CudaDriver& d)
{
    void* handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        char const* why = dlerror();
        return std::string("cannot load the CUDA driver (libcuda.so.1): ") + (why != nullptr ? why : "not found")
            + "; the plugin runs only where an NVIDIA driver is installed";
    }
    std::string missing;
    // Versioned names: what cuda.h's macros (cuMemAlloc -> cuMemAlloc_v2, ...) resolve to.
    bind(handle, d.init, "cuInit", missing);
    bind(handle, d.getErrorString, "cuGetErrorString", missing);
    bind(handle, d.ctxGetCurrent, "cuCtxGetCurrent", missing);
    bind(handle, d.ctxGetDevice, "cuCtxGetDevice", missing);
    bind(handle, d.ctxSetCurrent, "cuCtxSetCurrent", missing);
    bind(handle, d.ctxSynchronize, "cuCtxSynchronize", missing);
    bind(handle, d.deviceGet, "cuDeviceGet", missing);
    bind(handle, d.deviceGetName, "cuDeviceGetName", missing);
    bind(handle, d.deviceGetAttribute, "cuDeviceGetAttribute", missing);
    bind(handle, d.devicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", missing);
    bind(handle, d.moduleLoadData, "cuModuleLoadData", missing);
    bind(handle, d.moduleGetFunction, "cuModuleGetFunction", missing);
    bind(handle, d.funcSetAttribute, "cuFuncSetAttribute", missing);
    bind(handle, d.launchKernel, "cuLaunchKernel", missing);
    bind(handle, d.memAlloc, "cuMemAlloc_v2", missing);
    bind(handle, d.memFree, "cuMemFree_v2", missing);
    bind(handle, d.memcpyHtoD, "cuMemcpyHtoD_v2", missing);
    bind(handle, d.memcpyDtoH, "cuMemcpyDtoH_v2", missing);
    if (!missing.empty())
    {
        return "the CUDA driver lacks " + missing + ": update the NVIDIA driver";
    }
    CUresult const status = d.init(0);
    return status == CUDA_SUCCESS ? std::string() : d.describe(status, "cuInit");
}

} // namespace

CudaDriver const* cudaDriver(std::string* error) noexcept
{
    static CudaDriver driver;
    static std::string failure;
    static std::once_flag once;
    try
    {
        std::call_once(once, [] { failure = openDriver(driver); });
    }
    catch (...)
    {
        failure = "opening the CUDA driver failed";
    }
    if (!failure.empty())
    {
        if (error != nullptr)
        {
            *error = failure;
        }
        return nullptr;
    }
    return &driver;
}

} // namespace attn_deploy
