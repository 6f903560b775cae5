// attn_deploy::FusedAttention: a flash-style CUDA kernel (see fused_attention_kernel.h).
//
// One thread block owns kBlockQ query rows of one (b, h) and walks the keys in tiles of kBlockK,
// keeping a running max m, a running denominator l and float32 accumulators per row (the online
// softmax), so no Nq x Nk buffer ever exists: shared memory holds one Q block, one K or V tile and
// one kBlockQ x kBlockK tile of scores. kThreadsPerRow threads share a row; they split the tile's
// key columns (for scores) and the dv output columns (for accumulators) and combine row maxima and
// sums with warp shuffles. attn_deploy/plugin/tiling_model.py is this algorithm in NumPy, step for
// step; change both together.
//
// This translation unit includes no TensorRT header, so CI compiles it with the pip nvcc.
#include "fused_attention_kernel.h"

#include <climits>
#include <cuda_fp16.h>
#include <math_constants.h>

namespace attn_deploy
{
namespace
{

constexpr int kColsPerThread = kMaxHeadDim / kThreadsPerRow;  // output columns per thread
constexpr int kScoresPerThread = kBlockK / kThreadsPerRow;    // key columns per thread per tile
constexpr int kScoreLd = kBlockK + 1;                         // +1: rows fall in distinct banks
constexpr size_t kDefaultSharedLimit = 48 * 1024;
static_assert(kBlockK % kThreadsPerRow == 0, "a tile's columns must split evenly between a row's threads");
static_assert(kMaxHeadDim % kThreadsPerRow == 0, "head columns must split evenly between a row's threads");
static_assert(32 % kThreadsPerRow == 0, "a row's threads must sit in one warp for the shuffles");

__device__ __forceinline__ float toFloat(float x)
{
    return x;
}

__device__ __forceinline__ float toFloat(__half x)
{
    return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T fromFloat(float x);

template <>
__device__ __forceinline__ float fromFloat<float>(float x)
{
    return x;
}

template <>
__device__ __forceinline__ __half fromFloat<__half>(float x)
{
    return __float2half_rn(x);
}

__device__ __forceinline__ float rowMax(float x)
{
#pragma unroll
    for (int offset = 1; offset < kThreadsPerRow; offset *= 2)
    {
        x = fmaxf(x, __shfl_xor_sync(0xffffffffU, x, offset));
    }
    return x;
}

__device__ __forceinline__ float rowSum(float x)
{
#pragma unroll
    for (int offset = 1; offset < kThreadsPerRow; offset *= 2)
    {
        x += __shfl_xor_sync(0xffffffffU, x, offset);
    }
    return x;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) fusedAttentionKernel(AttentionParams const p, int64_t const qBlocks)
{
    extern __shared__ float smem[];
    int const dk = p.dk;
    int const dv = p.dv;
    int const ldq = dk + 1;
    int const ldkv = max(dk, dv) + 1;  // odd strides (for even d): a row's 4 threads read K rows in distinct banks
    float* qs = smem;                  // [kBlockQ][ldq]: Q block, already multiplied by scale
    float* kvs = qs + kBlockQ * ldq;   // [kBlockK][ldkv]: the K tile, then the V tile
    float* ps = kvs + kBlockK * ldkv;  // [kBlockQ][kScoreLd]: probabilities of the current tile

    int64_t const bh = static_cast<int64_t>(blockIdx.x) / qBlocks;
    int64_t const q0 = (static_cast<int64_t>(blockIdx.x) % qBlocks) * kBlockQ;
    int64_t const b = bh / p.heads;
    int64_t const h = bh % p.heads;
    int const tid = static_cast<int>(threadIdx.x);
    int const row = tid / kThreadsPerRow;
    int const lane = tid % kThreadsPerRow;
    int64_t const qi = q0 + row;
    bool const rowValid = qi < p.nq;

    T const* q = static_cast<T const*>(p.q) + bh * p.nq * dk;
    T const* k = static_cast<T const*>(p.k) + bh * p.nk * dk;
    T const* v = static_cast<T const*>(p.v) + bh * p.nk * dv;
    T const* bias = static_cast<T const*>(p.bias);
    int64_t const biasRow = b * p.biasStride[0] + h * p.biasStride[1] + (rowValid ? qi : 0) * p.biasStride[2];

    for (int e = tid; e < kBlockQ * dk; e += kThreads)
    {
        int const r = e / dk;
        int const d = e % dk;
        qs[r * ldq + d] = (q0 + r < p.nq) ? toFloat(q[(q0 + r) * dk + d]) * p.scale : 0.0F;
    }

    float m = -CUDART_INF_F;  // running row max of the scores
    float l = 0.0F;           // running sum of exp(score - m)
    float acc[kColsPerThread];
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j)
    {
        acc[j] = 0.0F;
    }

    for (int64_t k0 = 0; k0 < p.nk; k0 += kBlockK)
    {
        __syncthreads();  // Q block stored (first tile); previous V tile consumed (later tiles)
        for (int e = tid; e < kBlockK * dk; e += kThreads)
        {
            int const c = e / dk;
            int const d = e % dk;
            kvs[c * ldkv + d] = (k0 + c < p.nk) ? toFloat(k[(k0 + c) * dk + d]) : 0.0F;
        }
        __syncthreads();

        // 1. Scores of this row against the tile's keys: this thread takes columns lane, lane+4, ...
        float s[kScoresPerThread];
        float tileMax = -CUDART_INF_F;
#pragma unroll
        for (int t = 0; t < kScoresPerThread; ++t)
        {
            int const c = lane + t * kThreadsPerRow;
            float dot = 0.0F;
            for (int d = 0; d < dk; ++d)
            {
                dot = fmaf(qs[row * ldq + d], kvs[c * ldkv + d], dot);
            }
            if (k0 + c >= p.nk)
            {
                dot = -CUDART_INF_F;  // padding keys of the last tile take no weight
            }
            else if (bias != nullptr)
            {
                dot += toFloat(bias[biasRow + (k0 + c) * p.biasStride[3]]);
            }
            s[t] = dot;
            tileMax = fmaxf(tileMax, dot);
        }

        // 2. Online softmax: rescale what was accumulated so far to the new row max.
        float const mNew = fmaxf(m, rowMax(tileMax));
        // A row masked so far (every score -inf) keeps weight 0 instead of exp(-inf + inf) = NaN.
        float const mSafe = (mNew == -CUDART_INF_F) ? 0.0F : mNew;
        float const alpha = expf(m - mSafe);
        float partial = 0.0F;
#pragma unroll
        for (int t = 0; t < kScoresPerThread; ++t)
        {
            float const pr = expf(s[t] - mSafe);
            ps[row * kScoreLd + lane + t * kThreadsPerRow] = pr;
            partial += pr;
        }
        l = l * alpha + rowSum(partial);
        m = mNew;
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j)
        {
            acc[j] *= alpha;
        }

        // 3. acc += P @ V_tile, this thread owning output columns lane, lane+4, ...
        __syncthreads();  // every thread done with the K tile
        for (int e = tid; e < kBlockK * dv; e += kThreads)
        {
            int const c = e / dv;
            int const d = e % dv;
            kvs[c * ldkv + d] = (k0 + c < p.nk) ? toFloat(v[(k0 + c) * dv + d]) : 0.0F;
        }
        __syncthreads();
        for (int c = 0; c < kBlockK; ++c)
        {
            float const pr = ps[row * kScoreLd + c];
#pragma unroll
            for (int j = 0; j < kColsPerThread; ++j)
            {
                int const col = lane + j * kThreadsPerRow;
                if (col < dv)
                {
                    acc[j] = fmaf(pr, kvs[c * ldkv + col], acc[j]);
                }
            }
        }
    }

    if (rowValid)
    {
        T* out = static_cast<T*>(p.out) + (bh * p.nq + qi) * dv;
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j)
        {
            int const col = lane + j * kThreadsPerRow;
            if (col < dv)
            {
                out[col] = fromFloat<T>(acc[j] / l);  // l == 0 only for a fully masked row: NaN, as softmax gives
            }
        }
    }
}

template <typename T>
cudaError_t launch(AttentionParams const& p, cudaStream_t stream)
{
    size_t const shared = fusedAttentionSharedBytes(p.dk, p.dv);
    if (shared > kDefaultSharedLimit)
    {
        cudaError_t const status = cudaFuncSetAttribute(
            fusedAttentionKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    int64_t const qBlocks = (p.nq + kBlockQ - 1) / kBlockQ;
    int64_t const blocks = qBlocks * p.batch * p.heads;
    if (blocks == 0)
    {
        return cudaSuccess;
    }
    if (blocks > INT_MAX)
    {
        return cudaErrorInvalidConfiguration;
    }
    fusedAttentionKernel<T><<<static_cast<unsigned>(blocks), kThreads, shared, stream>>>(p, qBlocks);
    return cudaGetLastError();
}

} // namespace

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
    if (dk < 1 || dk > kMaxHeadDim)
    {
        return "FusedAttention plugin: dk (last dim of Q and K) must be between 1 and 256";
    }
    if (dv < 1 || dv > kMaxHeadDim)
    {
        return "FusedAttention plugin: dv (last dim of V) must be between 1 and 256";
    }
    return nullptr;
}

size_t fusedAttentionSharedBytes(int32_t dk, int32_t dv) noexcept
{
    size_t const ldq = static_cast<size_t>(dk) + 1;
    size_t const ldkv = static_cast<size_t>(dk > dv ? dk : dv) + 1;
    return sizeof(float) * (kBlockQ * ldq + kBlockK * ldkv + kBlockQ * kScoreLd);
}

cudaError_t fusedAttentionForward(AttentionParams const& params, cudaStream_t stream) noexcept
{
    if (fusedAttentionUnsupportedReason(params.dk, params.dv) != nullptr || params.nk < 1 || params.nq < 0
        || params.batch < 0 || params.heads < 0 || params.q == nullptr || params.k == nullptr
        || params.v == nullptr || params.out == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    switch (params.dtype)
    {
    case AttentionDType::kFloat32: return launch<float>(params, stream);
    case AttentionDType::kFloat16: return launch<__half>(params, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace attn_deploy
