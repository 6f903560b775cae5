"""The FusedAttention forward kernel, written once in Triton.

One kernel serves three places: the op's CUDA implementation in PyTorch (``triton_attention`` on
CUDA tensors), the TensorRT plugin (compiled ahead of time, see ``attn_deploy.trt_plugin.aot``),
and the CPU tests, which run the same source under Triton's interpreter against a float64 reference.

Contract (DESIGN.md §2): ``O = softmax(scale·Q·Kᵀ + bias)·V`` for ``Q [B,H,Nq,dk]``, ``K [B,H,Nk,dk]``,
``V [B,H,Nk,dv]``, bias broadcastable to ``[B,H,Nq,Nk]`` (addressed through strides: 0 on broadcast
axes). Products run on tensor cores (``tl.dot``) with float32 accumulation; the softmax is float32
and online (one pass over the keys, running max and sum). A row whose scores are all ``-inf`` gives
NaN, as softmax does. float32 inputs multiply exactly (``"ieee"``) by default, or as TF32 when asked.

Tiling: one program owns ``BLOCK_M`` query rows of one (batch, head) and ``BLOCK_DV`` output columns;
it walks the keys in ``BLOCK_N`` steps and, when dk is larger than ``BLOCK_DK``, sums Q·Kᵀ over dk
chunks. Large dv (SAGAN C=2048) is split across programs, each recomputing its rows' scores: score
work grows by dv/BLOCK_DV, and no accumulator larger than ``BLOCK_M×BLOCK_DV`` exists.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import triton
import triton.language as tl

if TYPE_CHECKING:
    from torch import Tensor

LOG2E = math.log2(math.e)
#: The one kernel's name (the symbol in compiled cubins).
KERNEL_NAME = "fused_attention_fwd"
#: Precisions of float32 products: exact (several instructions per product) or TF32 tensor cores.
FP32_PRECISIONS = ("ieee", "tf32")


def fused_attention_fwd(  # type: ignore[no-untyped-def]  # Triton reads annotations: only constexprs carry one
    Q, K, V, Bias, Out,  # noqa: N803 - pointers, named as the maths names them
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_bb, stride_bh, stride_bm, stride_bn,
    stride_ob, stride_oh, stride_om,
    heads, nq, nk, dk, dv,
    qk_scale,
    HAS_BIAS: tl.constexpr,  # noqa: N803
    BLOCK_M: tl.constexpr,  # noqa: N803
    BLOCK_N: tl.constexpr,  # noqa: N803
    BLOCK_DK: tl.constexpr,  # noqa: N803
    BLOCK_DV: tl.constexpr,  # noqa: N803
    ONE_DK_BLOCK: tl.constexpr,  # noqa: N803
    FP32_PRECISION: tl.constexpr,  # noqa: N803
):
    """Triton source (wrapped by ``jit_kernel``/``interpreted_kernel``). Last axes are contiguous;
    ``qk_scale`` is ``scale·log2(e)`` (the softmax runs in base 2); grid ``(⌈Nq/BLOCK_M⌉, B·H, ⌈dv/BLOCK_DV⌉)``."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    pid_v = tl.program_id(2)
    b = (pid_bh // heads).to(tl.int64)
    h = (pid_bh % heads).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
    row_ok = offs_m < nq
    dv_ok = offs_dv < dv
    rows64 = offs_m.to(tl.int64)

    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    if ONE_DK_BLOCK:
        q = tl.load(q_base + rows64[:, None] * stride_qm + offs_dk[None, :],
                    mask=row_ok[:, None] & (offs_dk[None, :] < dk), other=0.0)

    for start_n in range(0, nk, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        key_ok = offs_n < nk
        cols64 = offs_n.to(tl.int64)
        if ONE_DK_BLOCK:
            k_t = tl.load(k_base + cols64[None, :] * stride_kn + offs_dk[:, None],
                          mask=key_ok[None, :] & (offs_dk[:, None] < dk), other=0.0)
            s = tl.dot(q, k_t, input_precision=FP32_PRECISION)
        else:
            s = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
            for d0 in range(0, dk, BLOCK_DK):
                dk_ok = (d0 + offs_dk) < dk
                q_c = tl.load(q_base + rows64[:, None] * stride_qm + (d0 + offs_dk)[None, :],
                              mask=row_ok[:, None] & dk_ok[None, :], other=0.0)
                k_c = tl.load(k_base + cols64[None, :] * stride_kn + (d0 + offs_dk)[:, None],
                              mask=key_ok[None, :] & dk_ok[:, None], other=0.0)
                s = tl.dot(q_c, k_c, s, input_precision=FP32_PRECISION)
        s = s * qk_scale
        if HAS_BIAS:
            bias = tl.load(Bias + b * stride_bb + h * stride_bh + rows64[:, None] * stride_bm + cols64[None, :] * stride_bn,
                           mask=row_ok[:, None] & key_ok[None, :], other=0.0)
            s = s + bias.to(tl.float32) * 1.4426950408889634  # log2(e)
        s = tl.where(key_ok[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row with no finite score yet keeps weight 0 (not exp(-inf + inf) = NaN); at the end
        # its sum is 0 and 0/0 gives NaN, as softmax of an all -inf row does.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols64[:, None] * stride_vn + offs_dv[None, :],
                    mask=key_ok[:, None] & dv_ok[None, :], other=0.0)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=FP32_PRECISION)
        m_i = m_new

    out = acc / l_i[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh + rows64[:, None] * stride_om + offs_dv[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & dv_ok[None, :])


@dataclass(frozen=True)
class TileConfig:
    """Block sizes and launch shape of one compiled variant."""

    block_m: int
    block_n: int
    block_dk: int
    block_dv: int
    num_warps: int
    num_stages: int

    def constexprs(self, dk: int, *, has_bias: bool, fp32_precision: str = "ieee") -> dict[str, Any]:
        """The kernel's compile-time arguments for head size ``dk``."""
        return {
            "HAS_BIAS": has_bias, "BLOCK_M": self.block_m, "BLOCK_N": self.block_n,
            "BLOCK_DK": self.block_dk, "BLOCK_DV": self.block_dv,
            "ONE_DK_BLOCK": dk <= self.block_dk, "FP32_PRECISION": fp32_precision,
        }

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, math.ceil(math.log2(max(n, 1))))))


def tile_config(dk: int, dv: int, *, itemsize: int = 2, arch: int = 90) -> TileConfig:
    """Block sizes for head sizes (dk, dv), element size in bytes and SM architecture (80, 90, ...).

    ``tl.dot`` needs every block dimension ≥ 16. dk up to 256 is one block (Q stays in registers
    across the key loop); larger dk is summed over 64-wide chunks. For 16-bit inputs the choices are
    the fastest measured on an H200 (benchmarks/results/gpu_check-h200.json): 128 query rows; dv
    whole up to 256 when dk ≤ 64 (SAGAN C=256: no score recomputation), else blocks of 128 columns;
    8 warps and 3 pipeline stages once a block is 128 wide. float32 tiles take twice the registers and shared memory:
    64 rows, dv blocks of 64, 4 warps. Tiles of 64 rows × 64 keys with 4 warps and padded dk and dv
    gave wrong results under Triton 3.6 on sm_90, so 16-bit tiles keep 128 rows.
    """
    block_dk = _pow2(dk, 16, 256) if dk <= 256 else 64
    if itemsize > 2:
        block_dv = _pow2(dv, 16, 64)
        return TileConfig(64, 32 if block_dk >= 128 else 64, block_dk, block_dv, 4, 2)
    block_dv = _pow2(dv, 16, 256 if block_dk <= 64 else 128)
    small_heads = block_dk <= 64 and block_dv <= 64
    num_warps = 4 if small_heads else 8
    block_n = 32 if small_heads else 64
    num_stages = 2 if arch < 90 else 4 if small_heads else 3
    return TileConfig(128, block_n, block_dk, block_dv, num_warps, num_stages)


@functools.cache
def jit_kernel() -> Any:
    """The kernel compiled for GPUs (``triton.compile`` takes this one ahead of time too)."""
    from triton.runtime.jit import JITFunction

    return JITFunction(fused_attention_fwd)


@functools.cache
def interpreted_kernel() -> Any:
    """The same source run by Triton's interpreter on CPU tensors (what CI tests)."""
    from triton.runtime import interpreter

    _teach_interpreter_bf16_dot(interpreter)
    return interpreter.InterpretedFunction(fused_attention_fwd)


def _teach_interpreter_bf16_dot(interpreter: Any) -> None:
    """Triton's interpreter keeps bfloat16 as its uint16 bits and its ``tl.dot`` multiplies those
    integers (Triton 3.8). Widen bfloat16 operands to float32 first: bf16·bf16 products are exact in
    float32, so this is what tensor cores compute, and the kernel's own roundings stay as written."""
    import numpy as np

    builder = interpreter.interpreter_builder
    if getattr(builder, "_attn_deploy_bf16_dot", False):
        return
    create_dot = builder.create_dot

    def widen(handle: Any) -> Any:
        if handle.dtype.scalar != tl.bfloat16:
            return handle
        bits = handle.data.astype(np.uint32) << np.uint32(16)
        return interpreter.TensorHandle(bits.view(np.float32), tl.float32)

    def create_dot_bf16(a: Any, b: Any, d: Any, input_precision: Any, max_num_imprecise_acc: Any) -> Any:
        return create_dot(widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    builder.create_dot = create_dot_bf16
    builder._attn_deploy_bf16_dot = True


def triton_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, *, scale: float,
    config: TileConfig | None = None, fp32_precision: str = "ieee", pad_heads: bool = True,
) -> Tensor:
    """``softmax(scale·q·kᵀ + bias)·v`` with the Triton kernel: compiled on CUDA tensors, interpreted on CPU ones.

    q/k/v are ``[B,H,N,d]`` of one dtype (float16, bfloat16 or float32); ``bias`` any tensor that
    broadcasts to ``[B,H,Nq,Nk]``. Returns a ``[B,H,Nq,dv]`` tensor of q's dtype.

    ``pad_heads`` zero-pads dk and dv to multiples of 16 first (a copy, only when they are not):
    with both unaligned (dk 72, dv 20) the compiled kernel read out of bounds under Triton 3.6 on
    an H200, while the same source is exact in the interpreter; padding does not change the result.
    """
    import torch

    if fp32_precision not in FP32_PRECISIONS:
        raise ValueError(f"fp32_precision must be one of {FP32_PRECISIONS}, got {fp32_precision!r}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be [B,H,N,d]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"q, k, v must share one of float16/bfloat16/float32; got {q.dtype}, {k.dtype}, {v.dtype}")
    batch, heads, nq, dk = q.shape
    nk, dv = v.shape[-2], v.shape[-1]
    if k.shape != (batch, heads, nk, dk) or v.shape[:2] != (batch, heads):
        raise ValueError(f"k must be {(batch, heads, nk, dk)} and v [{batch},{heads},{nk},dv]; got {tuple(k.shape)}, {tuple(v.shape)}")
    if pad_heads and (dk % 16 or dv % 16):
        import torch.nn.functional as F

        q, k = (F.pad(t, (0, -dk % 16)) for t in (q, k))
        v = F.pad(v, (0, -dv % 16))
        padded = triton_attention(q, k, v, bias, scale=scale, config=config, fp32_precision=fp32_precision, pad_heads=False)
        return padded[..., :dv]
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty((batch, heads, nq, dv), dtype=q.dtype, device=q.device)
    if bias is not None:
        bias = bias.to(q.device).expand(batch, heads, nq, nk)  # stride 0 on broadcast axes, no copy
        bias_strides = tuple(bias.stride())
        bias_arg = bias
    else:
        bias_strides = (0, 0, 0, 0)
        bias_arg = q  # never read: HAS_BIAS is False
    config = config or tile_config(dk, dv, itemsize=q.element_size(), arch=_arch(q))
    grid = (triton.cdiv(nq, config.block_m), batch * heads, triton.cdiv(dv, config.block_dv))
    kernel = jit_kernel() if q.is_cuda else _cpu_kernel()
    kernel[grid](
        q, k, v, bias_arg, out,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        *bias_strides,
        out.stride(0), out.stride(1), out.stride(2),
        heads, nq, nk, dk, dv,
        float(scale) * LOG2E,
        num_warps=config.num_warps, num_stages=config.num_stages,
        **config.constexprs(dk, has_bias=bias is not None, fp32_precision=fp32_precision),
    )
    return out


def _cpu_kernel() -> Any:
    from triton import knobs

    if not knobs.runtime.interpret:
        raise RuntimeError(
            "the Triton attention kernel runs on CPU tensors only in Triton's interpreter: "
            "set TRITON_INTERPRET=1 before triton is first imported, or pass CUDA tensors"
        )
    return interpreted_kernel()


def _arch(t: Tensor) -> int:
    import torch

    if not t.is_cuda:
        return 0
    major, minor = torch.cuda.get_device_capability(t.device)
    return major * 10 + minor
