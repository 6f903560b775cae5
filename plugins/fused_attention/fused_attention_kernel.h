// attn_deploy::FusedAttention forward: the host side of the Triton kernel's embedded cubins (no TensorRT).
//
// O[b,h,i,:] = softmax_j(scale * Q[b,h,i,:] . K[b,h,j,:] + bias[b,h,i,j]) @ V[b,h,:,:]
// Q [B,H,Nq,dk], K [B,H,Nk,dk], V [B,H,Nk,dv], O [B,H,Nq,dv], contiguous, one dtype (float32, float16
// or bfloat16: whichever the library has cubins for); bias optional, same dtype, addressed through
// element strides so any tensor broadcastable to [B,H,Nq,Nk] works (stride 0 on broadcast axes).
// Any dk, dv >= 1. Softmax and accumulation are float32 (DESIGN.md section 2).
//
// The kernel is attn_deploy/ops/triton_kernel.py, compiled ahead of time per SM architecture by
// attn_deploy/trt_plugin/aot.py, which generates fused_attention_cubins.cpp (the kCubinImages table).
// fusedAttentionForward picks the image for the current device and shapes, loads it once per CUDA
// context (cuModuleLoadData) and launches it with cuLaunchKernel. The CUDA driver is opened at run
// time (dlopen libcuda.so.1), so the library loads on machines without a driver (engine builds on a CPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda.h>

namespace attn_deploy
{

enum class AttentionDType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
    kBFloat16 = 2,
};

//! One embedded cubin (a row of the generated table).
struct CubinImage
{
    int32_t arch;             // SM number: 80, 86, 89, 90, 100, 120, ...
    char const* kernelName;   // the symbol for cuModuleGetFunction
    char const* key;          // the variant's name in the build cache
    int32_t dtype;            // AttentionDType
    int32_t hasBias;
    int32_t blockM;
    int32_t blockN;
    int32_t blockDk;
    int32_t oneDkBlock;       // 1: dk <= blockDk in one block; 0: dk summed over blockDk chunks
    int32_t blockDv;
    int32_t aligned;          // 1: pointers 16-byte aligned, dk and dv multiples of 16
    int32_t numWarps;
    int32_t numStages;
    int32_t sharedBytes;      // dynamic shared memory per block
    unsigned char const* image;
    size_t size;
};

extern CubinImage const kCubinImages[];
extern int32_t const kNbCubinImages;

struct AttentionParams
{
    void const* q{nullptr};
    void const* k{nullptr};
    void const* v{nullptr};
    void const* bias{nullptr};  // nullptr: no bias
    void* out{nullptr};
    int64_t batch{0};
    int64_t heads{0};
    int64_t nq{0};
    int64_t nk{0};
    int32_t dk{0};
    int32_t dv{0};
    int64_t biasStride[4]{0, 0, 0, 0};  // elements, for b, h, i, j; 0 where bias broadcasts
    float scale{1.0F};
    AttentionDType dtype{AttentionDType::kFloat32};
};

//! Fill params.biasStride for a contiguous bias of rank `rank` (0..4; 0 is a scalar) and dims `dims`,
//! right-aligned against [B,H,Nq,Nk] as in NumPy broadcasting. False if it does not broadcast.
bool setBroadcastBiasStrides(AttentionParams& params, int32_t rank, int64_t const* dims) noexcept;

//! Why these head sizes cannot run (a static string), or nullptr if they can.
char const* fusedAttentionUnsupportedReason(int32_t dk, int32_t dv) noexcept;

//! True if the library holds cubins (for some architecture) for this dtype.
bool fusedAttentionHasDType(AttentionDType dtype) noexcept;

//! Index in kCubinImages of the image that runs these shapes on an SM `arch` device, or -1.
//! `aligned`: pointers 16-byte aligned and dk, dv multiples of 16. `maxSharedBytes`: the device's
//! opt-in shared memory per block (images needing more are passed over; <= 0: no limit).
int32_t selectCubin(int32_t arch, AttentionDType dtype, bool hasBias, int32_t dk, int32_t dv, bool aligned,
    int32_t maxSharedBytes = 0) noexcept;

//! Load, into the current CUDA context, the cubins enqueue will pick for these shapes (aligned buffers or
//! not), so that no module is loaded during enqueue (e.g. under CUDA graph capture). Empty string, or
//! why not (no cubin for this GPU). Without a driver or a current context it does nothing.
std::string fusedAttentionPrepare(AttentionDType dtype, bool hasBias, int32_t dk, int32_t dv) noexcept;

//! Launch on `stream` (the current context's device). Returns an empty string or why it failed; never synchronises.
std::string fusedAttentionForward(AttentionParams const& params, CUstream stream) noexcept;

} // namespace attn_deploy

//! The embedded images' table as JSON (architectures, kernel names, tile sizes, sizes), for tools and tests.
extern "C" __attribute__((visibility("default"))) char const* attn_deploy_fused_attention_cubin_table();
