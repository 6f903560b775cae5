// The FusedAttention CUDA kernel as a PyTorch extension, so its numerics can be checked against
// torch.ops.attn_deploy.fused_attention on any NVIDIA GPU without TensorRT
// (attn_deploy/plugin/torch_ext.py builds it with torch.utils.cpp_extension.load).
#include "fused_attention_kernel.h"

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

namespace
{

torch::Tensor fusedAttention(torch::Tensor q, torch::Tensor k, torch::Tensor v, std::optional<torch::Tensor> bias, double scale)
{
    TORCH_CHECK(q.is_cuda() && k.is_cuda() && v.is_cuda(), "q, k and v must be CUDA tensors");
    TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k and v must be 4-D [B, H, N, d]");
    TORCH_CHECK(q.scalar_type() == torch::kFloat32 || q.scalar_type() == torch::kFloat16, "float32 or float16 only");
    TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), "q, k and v must share a dtype");
    TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(1) == q.size(1) && v.size(1) == q.size(1),
        "q, k and v must share B and H");
    TORCH_CHECK(k.size(3) == q.size(3), "q and k must share dk");
    TORCH_CHECK(v.size(2) == k.size(2), "k and v must share Nk");
    char const* reason = attn_deploy::fusedAttentionUnsupportedReason(static_cast<int32_t>(q.size(3)), static_cast<int32_t>(v.size(3)));
    TORCH_CHECK(reason == nullptr, reason);
    c10::cuda::CUDAGuard guard(q.device());
    q = q.contiguous();
    k = k.contiguous();
    v = v.contiguous();
    auto out = torch::empty({q.size(0), q.size(1), q.size(2), v.size(3)}, q.options());

    attn_deploy::AttentionParams params;
    params.q = q.data_ptr();
    params.k = k.data_ptr();
    params.v = v.data_ptr();
    params.out = out.data_ptr();
    params.batch = q.size(0);
    params.heads = q.size(1);
    params.nq = q.size(2);
    params.nk = k.size(2);
    params.dk = static_cast<int32_t>(q.size(3));
    params.dv = static_cast<int32_t>(v.size(3));
    params.scale = static_cast<float>(scale);
    params.dtype = q.scalar_type() == torch::kFloat16 ? attn_deploy::AttentionDType::kFloat16 : attn_deploy::AttentionDType::kFloat32;
    torch::Tensor b;
    if (bias.has_value())
    {
        b = bias->to(q.device(), q.scalar_type()).contiguous();
        TORCH_CHECK(b.dim() <= 4, "bias must have rank 0 to 4");
        std::vector<int64_t> dims(b.sizes().begin(), b.sizes().end());
        TORCH_CHECK(attn_deploy::setBroadcastBiasStrides(params, static_cast<int32_t>(b.dim()), dims.data()),
            "bias does not broadcast to [B, H, Nq, Nk]");
        params.bias = b.data_ptr();
    }
    cudaError_t const status = attn_deploy::fusedAttentionForward(params, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(status == cudaSuccess, "FusedAttention kernel launch failed: ", cudaGetErrorString(status));
    return out;
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("fused_attention", &fusedAttention, "softmax(scale * q @ k^T + bias) @ v (attn_deploy FusedAttention kernel)",
        pybind11::arg("q"), pybind11::arg("k"), pybind11::arg("v"), pybind11::arg("bias") = pybind11::none(),
        pybind11::arg("scale"));
}
