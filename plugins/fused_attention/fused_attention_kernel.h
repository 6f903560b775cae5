// attn_deploy::FusedAttention, the CUDA kernel's host interface (no TensorRT, no PyTorch).
//
// O[b,h,i,:] = softmax_j(scale * Q[b,h,i,:] . K[b,h,j,:] + bias[b,h,i,j]) @ V[b,h,:,:]
// Q [B,H,Nq,dk], K [B,H,Nk,dk], V [B,H,Nk,dv], O [B,H,Nq,dv], all contiguous and of one dtype
// (float32 or float16); bias optional, same dtype, addressed through element strides so that any
// tensor broadcastable to [B,H,Nq,Nk] works (stride 0 on broadcast dimensions). Softmax and
// accumulation are float32 whatever the input dtype (DESIGN.md section 2).
//
// The tile constants below are read by attn_deploy/plugin/tiling_model.py (the NumPy model of this
// kernel that the CPU tests check against the op): keep each as `constexpr int kName = <int>;`.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace attn_deploy
{

constexpr int kBlockQ = 32;        // query rows per thread block
constexpr int kBlockK = 32;        // key rows per tile of the online softmax
constexpr int kThreadsPerRow = 4;  // threads sharing one query row (a 4-lane shuffle group)
constexpr int kMaxHeadDim = 256;   // largest dk and dv the kernel accepts
constexpr int kThreads = kBlockQ * kThreadsPerRow;

enum class AttentionDType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

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
//! right-aligned against [B,H,Nq,Nk] as in NumPy broadcasting. Returns false if the shape does not
//! broadcast to [B,H,Nq,Nk].
bool setBroadcastBiasStrides(AttentionParams& params, int32_t rank, int64_t const* dims) noexcept;

//! Why these sizes cannot run (a static string), or nullptr if they can.
char const* fusedAttentionUnsupportedReason(int32_t dk, int32_t dv) noexcept;

//! Dynamic shared memory one thread block needs for these head sizes.
size_t fusedAttentionSharedBytes(int32_t dk, int32_t dv) noexcept;

//! Launch on `stream`. Returns cudaSuccess or the launch error; never synchronises.
cudaError_t fusedAttentionForward(AttentionParams const& params, cudaStream_t stream) noexcept;

} // namespace attn_deploy
