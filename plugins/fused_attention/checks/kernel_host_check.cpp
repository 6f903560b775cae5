// Host-side check of the kernel library, runnable without a GPU (tests/plugin/test_host_checks.py).
//
//   kernel_host_check strides B H Nq Nk [d0 [d1 [d2 [d3]]]]  -> "sb sh si sj" or "reject" (no dims: scalar bias)
//   kernel_host_check limits                                 -> shared bytes and reasons, then launch guards
#include "fused_attention_kernel.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace
{

int strides(int argc, char** argv)
{
    if (argc < 6 || argc > 10)
    {
        std::fprintf(stderr, "usage: strides B H Nq Nk dims...\n");
        return 2;
    }
    attn_deploy::AttentionParams p;
    p.batch = std::atoll(argv[2]);
    p.heads = std::atoll(argv[3]);
    p.nq = std::atoll(argv[4]);
    p.nk = std::atoll(argv[5]);
    int64_t dims[4] = {0, 0, 0, 0};
    int const rank = argc - 6;
    for (int i = 0; i < rank; ++i)
    {
        dims[i] = std::atoll(argv[6 + i]);
    }
    if (!attn_deploy::setBroadcastBiasStrides(p, rank, dims))
    {
        std::printf("reject\n");
        return 0;
    }
    std::printf("%lld %lld %lld %lld\n", static_cast<long long>(p.biasStride[0]), static_cast<long long>(p.biasStride[1]),
        static_cast<long long>(p.biasStride[2]), static_cast<long long>(p.biasStride[3]));
    return 0;
}

int limits()
{
    int const sizes[][2] = {{32, 256}, {256, 256}, {64, 64}, {1, 1}, {0, 8}, {257, 8}, {8, 257}};
    for (auto const& s : sizes)
    {
        char const* reason = attn_deploy::fusedAttentionUnsupportedReason(s[0], s[1]);
        std::printf("dk=%d dv=%d shared=%zu reason=%s\n", s[0], s[1], attn_deploy::fusedAttentionSharedBytes(s[0], s[1]),
            reason != nullptr ? reason : "none");
    }
    // Argument guards answer before any CUDA call, so these run without a GPU.
    attn_deploy::AttentionParams p;
    p.batch = p.heads = p.nq = p.nk = 1;
    p.dk = 300;
    p.dv = 8;
    std::printf("launch dk=300: %s\n", attn_deploy::fusedAttentionForward(p, nullptr) == cudaErrorInvalidValue ? "invalid" : "other");
    p.dk = 8;
    std::printf("launch null pointers: %s\n", attn_deploy::fusedAttentionForward(p, nullptr) == cudaErrorInvalidValue ? "invalid" : "other");
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc >= 2 && std::strcmp(argv[1], "strides") == 0)
    {
        return strides(argc, argv);
    }
    if (argc == 2 && std::strcmp(argv[1], "limits") == 0)
    {
        return limits();
    }
    std::fprintf(stderr, "usage: kernel_host_check strides|limits ...\n");
    return 2;
}
