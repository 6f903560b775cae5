"""The plugin's CUDA kernel (as a PyTorch extension) against torch.ops.attn_deploy.fused_attention. GPU only."""

from __future__ import annotations

import pytest
import torch

from attn_deploy.ops import reference_attention
from attn_deploy.trt_plugin.toolchain import find_nvcc

pytestmark = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found (the cuda-build extra installs it)")
needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs an NVIDIA GPU (kernel numerics are covered on CPU by test_tiling_model.py)"
)


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a compiled module
    from attn_deploy.trt_plugin.torch_ext import load_torch_extension

    return load_torch_extension(tmp_path_factory.mktemp("torch_ext"))


@pytest.mark.slow
def test_extension_builds_and_checks_its_arguments(ext) -> None:  # noqa: ANN001
    """Builds and imports without a GPU (about a minute: torch's headers), so a broken binding fails in CI."""
    cpu = torch.zeros(1, 1, 2, 4)
    with pytest.raises(RuntimeError, match="must be CUDA tensors"):
        ext.fused_attention(cpu, cpu, cpu, None, 1.0)


CASES = [
    # (B, H, Nq, Nk, dk, dv, bias shape or None)
    (1, 1, 1, 1, 1, 1, None),
    (2, 1, 300, 300, 32, 256, None),          # SAGAN: dk = C/8, dv = C
    (1, 4, 77, 130, 64, 64, (77, 130)),
    (2, 3, 33, 65, 16, 40, (1, 3, 1, 65)),
    (1, 2, 64, 97, 256, 256, (2, 1, 64, 97)),
]


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:6])) + ("-bias" if c[6] else ""))
def test_kernel_matches_the_op(ext, case: tuple, dtype: torch.dtype) -> None:  # noqa: ANN001
    b, h, nq, nk, dk, dv, bias_shape = case
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, h, nq, dk, device="cuda", generator=gen).to(dtype)
    k = torch.randn(b, h, nk, dk, device="cuda", generator=gen).to(dtype)
    v = torch.randn(b, h, nk, dv, device="cuda", generator=gen).to(dtype)
    bias = None if bias_shape is None else torch.randn(*bias_shape, device="cuda", generator=gen).to(dtype)
    scale = dk ** -0.5
    got = ext.fused_attention(q, k, v, bias, scale)
    op = torch.ops.attn_deploy.fused_attention(q, k, v, bias, scale=scale)
    ref = reference_attention(q.double(), k.double(), v.double(), None if bias is None else bias.double(), scale=scale)
    assert got.dtype == dtype and got.shape == op.shape
    tol = 2e-5 if dtype == torch.float32 else 2e-3
    assert (got.double() - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())
    assert (got.float() - op.float()).abs().max().item() <= 2 * tol * max(1.0, ref.abs().max().item())


@needs_gpu
def test_masked_rows(ext) -> None:  # noqa: ANN001
    q, k, v = (torch.randn(1, 1, 40, 8, device="cuda") for _ in range(3))
    mask = torch.zeros(40, 40, device="cuda")
    mask[:, :37] = float("-inf")  # the first key tile entirely masked
    got = ext.fused_attention(q, k, v, mask, 0.5)
    torch.testing.assert_close(got, reference_attention(q, k, v, mask, scale=0.5), rtol=1e-5, atol=1e-5)


@needs_gpu
def test_rejects_heads_over_256(ext) -> None:  # noqa: ANN001
    q = torch.randn(1, 1, 4, 300, device="cuda")
    with pytest.raises(RuntimeError, match="between 1 and 256"):
        ext.fused_attention(q, q, q, None, 1.0)
