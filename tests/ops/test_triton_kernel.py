"""The Triton kernel itself, run by Triton's interpreter on the CPU against a float64 reference.

The grid (attn_deploy/ops/kernel_cases.py) covers ragged tiles, dk ≠ dv, dk over several chunks,
dv = 2048, every bias broadcast, a gathered and a strided bias, -inf masks with fully masked rows,
in float32, float16 and bfloat16. benchmarks/gpu_check.py runs the same grid compiled on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from attn_deploy.ops.kernel_cases import KernelCase, cases, run_case
from attn_deploy.ops.triton_kernel import tile_config, triton_attention

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="on a GPU the kernel is compiled: benchmarks/gpu_check.py runs this grid there"
)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # 0/0 of masked rows
@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_grid(case: KernelCase) -> None:
    assert run_case(case) < case.tolerance


def test_grid_covers_the_acceptance() -> None:
    grid = cases()
    assert {c.dtype for c in grid} == {"float32", "float16", "bfloat16"}
    assert any(c.dims[4] != c.dims[5] for c in grid) and any(c.dims[5] == 2048 for c in grid)
    assert any(c.bias == "mask" for c in grid) and any(c.bias == "gathered" for c in grid)
    assert len({c.bias for c in grid if isinstance(c.bias, tuple)}) >= 8


def test_output_depends_on_every_input() -> None:
    q, k, v = (torch.randn(1, 1, 18, 16) for _ in range(3))
    base = triton_attention(q, k, v, scale=0.25)
    for changed in ((q + 1, k, v), (q, k.flip(2) * 2, v), (q, k, v + 1)):
        assert not torch.allclose(triton_attention(*changed, scale=0.25), base)


def test_rejects_bad_inputs() -> None:
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="share one of"):
        triton_attention(q, q.double(), q, scale=1.0)
    with pytest.raises(ValueError, match=r"\[B,H,N,d\]"):
        triton_attention(q[0], q, q, scale=1.0)
    with pytest.raises(ValueError, match="fp32_precision"):
        triton_attention(q, q, q, scale=1.0, fp32_precision="fast")


@pytest.mark.parametrize(("dk", "dv"), [(8, 8), (32, 256), (64, 64), (256, 2048), (512, 64), (2048, 2048)])
@pytest.mark.parametrize("itemsize", [2, 4])
def test_tile_config_fits_tensor_cores(dk: int, dv: int, itemsize: int) -> None:
    config = tile_config(dk, dv, itemsize=itemsize)
    assert min(config.block_m, config.block_n, config.block_dk, config.block_dv) >= 16  # tl.dot's minimum
    assert config.block_dk <= 256 and config.block_dv <= 256
    assert config.block_m * config.block_dv / (32 * config.num_warps) <= 128  # fp32 accumulator registers per thread
