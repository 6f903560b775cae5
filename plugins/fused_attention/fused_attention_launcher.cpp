// Picks, loads and launches the embedded cubins of the Triton attention kernel (see fused_attention_kernel.h).
#include "fused_attention_kernel.h"

#include "cuda_driver.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <utility>

namespace attn_deploy
{

bool setBroadcastBiasStrides(AttentionParams& params, int32_t rank, int64_t const* dims) noexcept
{
    if (rank < 0 || rank > 4 || (rank > 0 && dims == nullptr))
    {
        return false;
    }
    int64_t const full[4] = {params.batch, params.heads, params.nq, params.nk};
    int64_t contiguous = 1;  // stride of bias axis ai in a contiguous bias
    for (int a = 3; a >= 0; --a)
    {
        int const ai = a - (4 - rank);
        if (ai < 0)
        {
            params.biasStride[a] = 0;
            continue;
        }
        if (dims[ai] == full[a] && full[a] != 1)
        {
            params.biasStride[a] = contiguous;
        }
        else if (dims[ai] == 1)
        {
            params.biasStride[a] = 0;
        }
        else
        {
            return false;
        }
        contiguous *= dims[ai];
    }
    return true;
}

char const* fusedAttentionUnsupportedReason(int32_t dk, int32_t dv) noexcept
{
    if (dk < 1)
    {
        return "FusedAttention plugin: dk (Q and K's last dimension) must be at least 1";
    }
    if (dv < 1)
    {
        return "FusedAttention plugin: dv (V's last dimension) must be at least 1";
    }
    return nullptr;
}

bool fusedAttentionHasDType(AttentionDType dtype) noexcept
{
    for (int32_t i = 0; i < kNbCubinImages; ++i)
    {
        if (kCubinImages[i].dtype == static_cast<int32_t>(dtype))
        {
            return true;
        }
    }
    return false;
}

namespace
{

//! Can an image built for SM `built` run on an SM `device`? Same major, not newer; the "a" targets
//! Triton uses from sm_90 on (sm_90a, sm_100a, ...) run only on their own architecture.
bool runsOn(int32_t built, int32_t device)
{
    return built == device || (built / 10 == device / 10 && built < device && built < 90);
}

//! Lower is better: aligned before unaligned, the tightest dk block that holds dk, then chunked dk,
//! the smallest dv block that holds dv, else the widest. -1: cannot run these shapes.
int64_t cost(CubinImage const& c, int32_t dk, int32_t dv, bool aligned)
{
    if (c.aligned != 0 && !aligned)
    {
        return -1;
    }
    if (c.oneDkBlock != 0 && dk > c.blockDk)
    {
        return -1;
    }
    int64_t const alignCost = c.aligned != 0 ? 0 : 1;
    int64_t const dkCost = c.oneDkBlock != 0 ? c.blockDk : 100000 + c.blockDk;
    int64_t const dvCost = c.blockDv >= dv ? c.blockDv : 100000 - c.blockDv;
    return (alignCost * 1000000 + dkCost) * 1000000 + dvCost;
}

} // namespace

int32_t selectCubin(
    int32_t arch, AttentionDType dtype, bool hasBias, int32_t dk, int32_t dv, bool aligned, int32_t maxSharedBytes) noexcept
{
    int32_t bestArch = -1;
    for (int32_t i = 0; i < kNbCubinImages; ++i)
    {
        CubinImage const& c = kCubinImages[i];
        if (c.dtype == static_cast<int32_t>(dtype) && runsOn(c.arch, arch) && c.arch > bestArch)
        {
            bestArch = c.arch;
        }
    }
    int32_t best = -1;
    int64_t bestCost = -1;
    for (int32_t i = 0; i < kNbCubinImages; ++i)
    {
        CubinImage const& c = kCubinImages[i];
        if (c.arch != bestArch || c.dtype != static_cast<int32_t>(dtype) || (c.hasBias != 0) != hasBias
            || (maxSharedBytes > 0 && c.sharedBytes > maxSharedBytes))
        {
            continue;
        }
        int64_t const k = cost(c, dk, dv, aligned);
        if (k >= 0 && (best < 0 || k < bestCost))
        {
            best = i;
            bestCost = k;
        }
    }
    return best;
}

namespace
{

struct LoadedKernel
{
    CUfunction function{nullptr};
    std::string error;
};

std::string builtArchitectures()
{
    std::string out;
    for (int32_t i = 0; i < kNbCubinImages; ++i)
    {
        std::string const sm = "sm_" + std::to_string(kCubinImages[i].arch);
        if (out.find(sm) == std::string::npos)
        {
            out += (out.empty() ? "" : ", ") + sm;
        }
    }
    return out.empty() ? "none" : out;
}

//! The image's function in `context`, loaded on first use. Modules stay loaded for the process's life.
LoadedKernel const& loadKernel(CudaDriver const& cu, CUcontext context, CUdevice device, int32_t index)
{
    static std::mutex mutex;
    static std::map<std::pair<CUcontext, int32_t>, LoadedKernel> loaded;
    std::lock_guard<std::mutex> lock(mutex);
    auto [it, inserted] = loaded.try_emplace(std::make_pair(context, index));
    LoadedKernel& k = it->second;
    if (!inserted)
    {
        return k;
    }
    CubinImage const& c = kCubinImages[index];
    CUmodule module{nullptr};
    CUresult status = cu.moduleLoadData(&module, c.image);
    if (status != CUDA_SUCCESS)
    {
        k.error = cu.describe(status, (std::string("cuModuleLoadData(") + c.key + ")").c_str());
        return k;
    }
    status = cu.moduleGetFunction(&k.function, module, c.kernelName);
    if (status != CUDA_SUCCESS)
    {
        k.error = cu.describe(status, (std::string("cuModuleGetFunction(") + c.kernelName + ")").c_str());
        k.function = nullptr;
        return k;
    }
    if (c.sharedBytes > 48 * 1024)
    {
        int optin = 0;
        cu.deviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
        if (c.sharedBytes > optin)
        {
            k.error = std::string(c.key) + " needs " + std::to_string(c.sharedBytes) + " bytes of shared memory per block; this GPU allows "
                + std::to_string(optin);
            k.function = nullptr;
            return k;
        }
        status = cu.funcSetAttribute(k.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, c.sharedBytes);
        if (status != CUDA_SUCCESS)
        {
            k.error = cu.describe(status, "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
            k.function = nullptr;
        }
    }
    return k;
}

char const* dtypeName(AttentionDType dtype)
{
    switch (dtype)
    {
    case AttentionDType::kFloat32: return "float32";
    case AttentionDType::kFloat16: return "float16";
    case AttentionDType::kBFloat16: return "bfloat16";
    }
    return "?";
}

constexpr int64_t kMaxGridY = 65535;

//! The current context's device: what selection needs to know about it.
struct CurrentDevice
{
    CUcontext context{nullptr};
    CUdevice device{0};
    int32_t arch{0};
    int32_t maxShared{0};  // opt-in shared memory per block: 99 KB on sm_86/89/120, where some float32 dk=256 variants do not fit
};

//! Empty string, or why there is no usable current context.
std::string currentDevice(CudaDriver const& cu, CurrentDevice& d)
{
    CUresult status = cu.ctxGetCurrent(&d.context);
    if (status == CUDA_SUCCESS)
    {
        status = d.context == nullptr ? CUDA_ERROR_INVALID_CONTEXT : cu.ctxGetDevice(&d.device);
    }
    if (status != CUDA_SUCCESS)
    {
        return cu.describe(status, "no current CUDA context");
    }
    int major = 0;
    int minor = 0;
    int maxShared = 0;
    cu.deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d.device);
    cu.deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d.device);
    cu.deviceGetAttribute(&maxShared, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, d.device);
    d.arch = major * 10 + minor;
    d.maxShared = maxShared;
    return {};
}

std::string noCubin(int32_t arch, AttentionDType dtype)
{
    return std::string("FusedAttention: no embedded cubin for sm_") + std::to_string(arch) + " and " + dtypeName(dtype)
        + " (this library has " + builtArchitectures() + "): rebuild it with attn-deploy build-plugin --cuda-arch "
        + std::to_string(arch) + " (and --dtypes for bf16)";
}

} // namespace

std::string fusedAttentionPrepare(AttentionDType dtype, bool hasBias, int32_t dk, int32_t dv) noexcept
{
    try
    {
        CudaDriver const* cu = cudaDriver(nullptr);
        CurrentDevice d;
        if (cu == nullptr || !currentDevice(*cu, d).empty())
        {
            return {};  // nothing to load into: enqueue reports it
        }
        int32_t const loose = selectCubin(d.arch, dtype, hasBias, dk, dv, false, d.maxShared);
        int32_t const tight = selectCubin(d.arch, dtype, hasBias, dk, dv, dk % 16 == 0 && dv % 16 == 0, d.maxShared);
        if (loose < 0 && tight < 0)
        {
            return noCubin(d.arch, dtype);
        }
        for (int32_t index : {loose, tight})
        {
            if (index >= 0 && loadKernel(*cu, d.context, d.device, index).function == nullptr)
            {
                return loadKernel(*cu, d.context, d.device, index).error;
            }
        }
        return {};
    }
    catch (std::exception const& e)
    {
        return std::string("FusedAttention: ") + e.what();
    }
}

std::string fusedAttentionForward(AttentionParams const& p, CUstream stream) noexcept
{
    try
    {
        if (char const* reason = fusedAttentionUnsupportedReason(p.dk, p.dv))
        {
            return reason;
        }
        if (p.q == nullptr || p.k == nullptr || p.v == nullptr || p.out == nullptr || p.batch < 1 || p.heads < 1 || p.nq < 1
            || p.nk < 1)
        {
            return "FusedAttention: null buffer or empty shape";
        }
        if (p.heads > kMaxGridY)
        {
            return "FusedAttention: at most 65535 heads";
        }
        std::string error;
        CudaDriver const* cu = cudaDriver(&error);
        if (cu == nullptr)
        {
            return error;
        }
        CurrentDevice d;
        error = currentDevice(*cu, d);
        if (!error.empty())
        {
            return error;
        }
        auto aligned16 = [](void const* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
        bool const aligned = aligned16(p.q) && aligned16(p.k) && aligned16(p.v) && aligned16(p.out) && p.dk % 16 == 0 && p.dv % 16 == 0;
        int32_t const index = selectCubin(d.arch, p.dtype, p.bias != nullptr, p.dk, p.dv, aligned, d.maxShared);
        if (index < 0)
        {
            return noCubin(d.arch, p.dtype);
        }
        LoadedKernel const& kernel = loadKernel(*cu, d.context, d.device, index);
        if (kernel.function == nullptr)
        {
            return kernel.error;
        }
        CubinImage const& c = kCubinImages[index];
        int64_t const elem = p.dtype == AttentionDType::kFloat32 ? 4 : 2;
        int64_t const sq[3] = {p.heads * p.nq * p.dk, p.nq * p.dk, p.dk};
        int64_t const sk[3] = {p.heads * p.nk * p.dk, p.nk * p.dk, p.dk};
        int64_t const sv[3] = {p.heads * p.nk * p.dv, p.nk * p.dv, p.dv};
        int64_t const so[3] = {p.heads * p.nq * p.dv, p.nq * p.dv, p.dv};
        int64_t sb[4] = {p.biasStride[0], p.biasStride[1], p.biasStride[2], p.biasStride[3]};
        int32_t heads = static_cast<int32_t>(p.heads);
        int32_t nq = static_cast<int32_t>(p.nq);
        int32_t nk = static_cast<int32_t>(p.nk);
        int32_t dk = p.dk;
        int32_t dv = p.dv;
        float qkScale = p.scale * 1.4426950408889634F;  // the kernel's softmax runs in base 2
        CUdeviceptr globalScratch = 0;
        CUdeviceptr profileScratch = 0;
        auto const gridX = static_cast<unsigned>((p.nq + c.blockM - 1) / c.blockM);
        auto const gridZ = static_cast<unsigned>((p.dv + c.blockDv - 1) / c.blockDv);
        // gridDim.y (batch x heads) is at most 65535: larger batches run in several launches.
        int64_t const batchesPerLaunch = kMaxGridY / p.heads;
        for (int64_t b0 = 0; b0 < p.batch; b0 += batchesPerLaunch)
        {
            int64_t const nb = std::min(batchesPerLaunch, p.batch - b0);
            auto offset = [&](void const* base, int64_t stride) {
                return reinterpret_cast<CUdeviceptr>(static_cast<char const*>(base) + b0 * stride * elem);
            };
            CUdeviceptr q = offset(p.q, sq[0]);
            CUdeviceptr k = offset(p.k, sk[0]);
            CUdeviceptr v = offset(p.v, sv[0]);
            CUdeviceptr bias = p.bias != nullptr ? offset(p.bias, sb[0]) : q;  // not read without a bias
            CUdeviceptr out = offset(p.out, so[0]);
            // The kernel's parameters in order (fused_attention_fwd), then Triton's two scratch pointers.
            void* args[] = {&q, &k, &v, &bias, &out,
                const_cast<int64_t*>(&sq[0]), const_cast<int64_t*>(&sq[1]), const_cast<int64_t*>(&sq[2]),
                const_cast<int64_t*>(&sk[0]), const_cast<int64_t*>(&sk[1]), const_cast<int64_t*>(&sk[2]),
                const_cast<int64_t*>(&sv[0]), const_cast<int64_t*>(&sv[1]), const_cast<int64_t*>(&sv[2]),
                &sb[0], &sb[1], &sb[2], &sb[3],
                const_cast<int64_t*>(&so[0]), const_cast<int64_t*>(&so[1]), const_cast<int64_t*>(&so[2]),
                &heads, &nq, &nk, &dk, &dv, &qkScale, &globalScratch, &profileScratch};
            CUresult const status = cu->launchKernel(kernel.function, gridX, static_cast<unsigned>(nb * p.heads), gridZ,
                static_cast<unsigned>(c.numWarps * 32), 1, 1, static_cast<unsigned>(c.sharedBytes), stream, args, nullptr);
            if (status != CUDA_SUCCESS)
            {
                return cu->describe(status, (std::string("cuLaunchKernel(") + c.key + ")").c_str());
            }
        }
        return {};
    }
    catch (std::exception const& e)
    {
        return std::string("FusedAttention: ") + e.what();
    }
}

} // namespace attn_deploy

char const* attn_deploy_fused_attention_cubin_table()
{
    static std::string const json = [] {
        std::string out = "[";
        char const* const dtypes[] = {"fp32", "fp16", "bf16"};
        for (int32_t i = 0; i < attn_deploy::kNbCubinImages; ++i)
        {
            attn_deploy::CubinImage const& c = attn_deploy::kCubinImages[i];
            bool const elf = c.size >= 4 && c.image[0] == 0x7f && c.image[1] == 'E' && c.image[2] == 'L' && c.image[3] == 'F';
            char row[640];
            std::snprintf(row, sizeof(row),
                "%s{\"arch\": %d, \"kernel_name\": \"%s\", \"key\": \"%s\", \"dtype\": \"%s\", \"has_bias\": %s, "
                "\"block_m\": %d, \"block_n\": %d, \"block_dk\": %d, \"one_dk_block\": %s, \"block_dv\": %d, "
                "\"aligned\": %s, \"num_warps\": %d, \"num_stages\": %d, \"shared_bytes\": %d, \"size\": %zu, \"elf\": %s}",
                i == 0 ? "" : ", ", c.arch, c.kernelName, c.key, dtypes[c.dtype], c.hasBias ? "true" : "false", c.blockM,
                c.blockN, c.blockDk, c.oneDkBlock ? "true" : "false", c.blockDv, c.aligned ? "true" : "false", c.numWarps,
                c.numStages, c.sharedBytes, c.size, elf ? "true" : "false");
            out += row;
        }
        return out + "]";
    }();
    return json.c_str();
}
