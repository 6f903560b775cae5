"""The Triton kernel's correctness grid, shared by the CPU tests (interpreted) and the GPU check.

Each case draws fresh random inputs, runs ``triton_attention`` and returns the largest error over
the largest reference value, against softmax attention in float64. NaN must appear exactly where
the reference has it (fully masked rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attn_deploy.ops.triton_kernel import TileConfig, tile_config, triton_attention

if TYPE_CHECKING:
    import torch

#: Tiles small enough that every case is ragged on the CPU: several query and key blocks, dk summed
#: over chunks, dv split across programs.
SMALL_TILES = TileConfig(block_m=16, block_n=16, block_dk=16, block_dv=32, num_warps=4, num_stages=2)
#: Largest |error| / largest |reference|, per dtype name (fp32 products exact, halves rounded once).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}
#: float32 through TF32 tensor cores (10-bit mantissa products), for GPU runs that ask for it.
TF32_TOLERANCE = 5e-3


@dataclass(frozen=True)
class KernelCase:
    """One check: shapes, dtype, bias (a shape, ``"mask"``, ``"gathered"`` or ``"strided"``) and tiles."""

    name: str
    dtype: str
    dims: tuple[int, int, int, int, int, int]  # B, H, Nq, Nk, dk, dv
    bias: tuple[int, ...] | str | None = None
    tiles: str = "small"  # "small" (SMALL_TILES) or "device" (tile_config for the tensors' device)
    fp32_precision: str = "ieee"
    pad_heads: bool = True  # False: the kernel's own dk/dv masks do the work

    @property
    def tolerance(self) -> float:
        return TF32_TOLERANCE if self.fp32_precision == "tf32" else TOLERANCE[self.dtype]


SHAPES = {
    "ragged": (2, 3, 37, 29, 24, 40),  # ragged everywhere, dk ≠ dv
    "one_tile": (1, 2, 16, 16, 16, 32),
    "few_queries": (1, 1, 5, 70, 8, 16),  # fewer queries than a tile, dk under tl.dot's 16
    "dk_chunks": (1, 1, 33, 21, 72, 20),  # dk summed over five chunks
}
BIAS_SHAPES: list[tuple[int, ...]] = [(), (19,), (23, 19), (3, 1, 1), (2, 1, 1, 19), (1, 3, 23, 19), (2, 3, 23, 19), (2, 3, 23, 1)]


def cases(dtypes: tuple[str, ...] = ("float32", "float16", "bfloat16")) -> list[KernelCase]:
    """The grid: shapes, SAGAN C=2048 columns on real tiles, every bias broadcast, masks, gathered bias."""
    grid: list[KernelCase] = []
    for dtype in dtypes:
        grid += [KernelCase(f"{name}-{dtype}", dtype, dims) for name, dims in SHAPES.items()]
        grid += [KernelCase(f"{name}-unpadded-{dtype}", dtype, dims, pad_heads=False) for name, dims in SHAPES.items()
                 if dims[4] % 16 or dims[5] % 16]
        grid.append(KernelCase(f"sagan2048-{dtype}", dtype, (1, 1, 20, 24, 256, 2048), tiles="device"))
        grid += [KernelCase(f"bias{'x'.join(map(str, s)) or '-scalar'}-{dtype}", dtype, (2, 3, 23, 19, 24, 40), bias=s)
                 for s in BIAS_SHAPES]
        grid.append(KernelCase(f"mask-{dtype}", dtype, (1, 2, 20, 40, 16, 24), bias="mask"))
    grid.append(KernelCase("gathered-float16", "float16", (1, 2, 21, 21, 16, 16), bias="gathered"))
    grid.append(KernelCase("strided-float32", "float32", (1, 1, 21, 21, 16, 16), bias="strided"))
    return grid


def device_sweep(dtypes: tuple[str, ...] = ("float16", "bfloat16")) -> list[KernelCase]:
    """Head sizes around every tile boundary on the device's own tiles (for the GPU: interpreting
    128-row tiles on a CPU is slow): dk and dv padded or exact, dv split or whole, masked rows."""
    grid = []
    for dtype in dtypes:
        for dk in (8, 40, 72, 128, 256, 300):
            for dv in (20, 100, 256, 2048):
                grid.append(KernelCase(f"sweep-dk{dk}-dv{dv}-{dtype}", dtype, (2, 2, 150, 131, dk, dv), tiles="device"))
        grid.append(KernelCase(f"sweep-mask-{dtype}", dtype, (1, 2, 150, 131, 72, 20), bias="mask", tiles="device"))
    return grid


def make_bias(kind: tuple[int, ...] | str | None, nq: int, nk: int, heads: int) -> torch.Tensor | None:
    """The bias of a case, in float32 (cast to the case's dtype by ``run_case``)."""
    import torch

    if kind is None:
        return None
    if kind == "mask":
        mask = torch.zeros(nq, nk)
        mask[:, 16:32] = float("-inf")  # whole key tiles of every row
        mask[torch.rand(nq, nk) < 0.3] = float("-inf")
        mask[3] = float("-inf")  # fully masked rows: NaN, as softmax gives
        mask[nq - 3] = float("-inf")
        mask[5, : nk - 9] = float("-inf")  # only the last tile's keys remain
        mask[5, nk - 9] = 0.0
        return mask
    if kind == "gathered":  # a relative-position table indexed at run time (Swin), not contiguous
        table = torch.randn(2 * nq - 1, heads)
        index = torch.arange(nq)[:, None] - torch.arange(nk)[None, :] + nq - 1
        return table[index].permute(2, 0, 1)
    if kind == "strided":  # a transposed view: strides, no copy
        return torch.randn(nk, nq).t()
    assert isinstance(kind, tuple)
    return 2 * torch.randn(kind)


def run_case(case: KernelCase, device: str = "cpu") -> float:
    """Largest error over largest reference value; raises AssertionError on misplaced NaN or a wrong shape."""
    import torch

    dtype = getattr(torch, case.dtype)
    b, h, nq, nk, dk, dv = case.dims
    q, k, v = (torch.randn(b, h, n, d, device=device).to(dtype) for n, d in ((nq, dk), (nk, dk), (nk, dv)))
    bias = make_bias(case.bias, nq, nk, h)
    bias = None if bias is None else bias.to(device=device, dtype=dtype)
    scale = 1 / math.sqrt(dk)
    itemsize = torch.empty((), dtype=dtype).element_size()
    tiles = SMALL_TILES if case.tiles == "small" else tile_config(dk, dv, itemsize=itemsize, arch=_arch(device))
    out = triton_attention(q, k, v, bias, scale=scale, config=tiles, fp32_precision=case.fp32_precision,
                           pad_heads=case.pad_heads)
    assert out.shape == (b, h, nq, dv) and out.dtype == dtype, f"{case.name}: got {tuple(out.shape)} {out.dtype}"
    ref = _reference(q, k, v, bias, scale)
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(out), nan), f"{case.name}: NaN must appear exactly on fully masked rows"
    err = (out.double() - ref)[~nan].abs().max() / ref[~nan].abs().max()
    return float(err)


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    scores = q.double() @ k.double().transpose(-1, -2) * scale
    if bias is not None:
        scores = scores + bias.double()
    return scores.softmax(-1) @ v.double()


def _arch(device: str) -> int:
    import torch

    if not device.startswith("cuda"):
        return 90
    major, minor = torch.cuda.get_device_capability(device)
    return major * 10 + minor
