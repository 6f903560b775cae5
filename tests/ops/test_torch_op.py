"""The PyTorch op: the contract's numbers, its memory bound, and how torch.export sees it."""

from __future__ import annotations

import pytest
import torch

from attn_deploy.ops import fused_attention, reference_attention, torch_op
from attn_deploy.ops.contract import block_rows
from attn_deploy.ops.torch_op import blocked_attention


@pytest.mark.parametrize(
    ("nq", "nk", "dk", "dv", "bias_shape"),
    [
        (100, 70, 8, 16, None),
        (1, 33, 4, 4, None),
        (65, 65, 32, 256, (65, 65)),  # SAGAN-like dk != dv, full bias
        (40, 30, 8, 8, (1, 30)),  # broadcast over queries
        (40, 30, 8, 8, (2, 3, 40, 30)),
    ],
)
def test_op_matches_reference(nq: int, nk: int, dk: int, dv: int, bias_shape: tuple[int, ...] | None) -> None:
    q, k, v = torch.randn(2, 3, nq, dk), torch.randn(2, 3, nk, dk), torch.randn(2, 3, nk, dv)
    bias = None if bias_shape is None else torch.randn(bias_shape)
    got = torch.ops.attn_deploy.fused_attention(q, k, v, bias, scale=0.37)
    want = reference_attention(q, k, v, bias, scale=0.37)
    assert got.shape == (2, 3, nq, dv)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("budget", [6 * 30, 6 * 30 * 7, 6 * 30 * 64])
def test_blocking_is_exact_at_every_block_size(budget: int) -> None:
    q, k, v = torch.randn(2, 3, 100, 8), torch.randn(2, 3, 30, 8), torch.randn(2, 3, 30, 5)
    bias = torch.randn(100, 30)
    got = blocked_attention(q, k, v, bias, scale=0.5, budget_elements=budget)
    torch.testing.assert_close(got, reference_attention(q, k, v, bias, scale=0.5), rtol=1e-5, atol=1e-5)


needs_onednn = pytest.mark.skipif(not torch_op._onednn_linear_available(),
                                  reason="this PyTorch build has no oneDNN linear ops (the tiled fast path)")


@needs_onednn
@pytest.mark.parametrize("bias_shape", [None, (1030, 1024), (1, 1024), (2, 1, 1, 1024), (1, 2, 1030, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_tiled_fast_path_matches_reference(bias_shape: tuple[int, ...] | None, dtype: torch.dtype) -> None:
    # Nq·Nk above EAGER_TILED_MIN_SCORES, budget small enough for 1,030 rows to take several tiles.
    q, k, v = torch.randn(2, 2, 1030, 8), torch.randn(2, 2, 1024, 8), torch.randn(2, 2, 1024, 12)
    bias = None if bias_shape is None else torch.randn(bias_shape)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    got = blocked_attention(q, k, v, bias, scale=0.7, budget_elements=300 * 1024)
    want = reference_attention(q.double(), k.double(), v.double(),
                               None if bias is None else bias.double(), scale=0.7)
    assert got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol)


@needs_onednn
def test_tiled_fast_path_accepts_inputs_that_require_grad_and_empty_head_dims() -> None:
    q, k, v = (torch.randn(1, 1, 1030, 8, requires_grad=True) for _ in range(3))
    got = blocked_attention(q, k, v, scale=0.5)
    torch.testing.assert_close(got, reference_attention(q, k, v, scale=0.5).detach(), rtol=1e-5, atol=1e-5)
    # dk = 0: every score is 0, so each query averages V uniformly.
    v4 = torch.randn(1, 1, 1024, 4)
    empty_dk = blocked_attention(torch.randn(1, 1, 1030, 0), torch.randn(1, 1, 1024, 0), v4, scale=1.0)
    torch.testing.assert_close(empty_dk, v4.mean(dim=-2, keepdim=True).expand(1, 1, 1030, 4), rtol=1e-5, atol=1e-6)


@needs_onednn
def test_tiled_fast_path_holds_one_tile_of_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_linear = torch_op._linear

    def spy(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        result = real_linear(x, packed)
        seen.append(result.numel())
        return result

    monkeypatch.setattr(torch_op, "_linear", spy)
    q, k, v = torch.randn(1, 1, 1100, 8), torch.randn(1, 1, 1000, 8), torch.randn(1, 1, 1000, 8)
    blocked_attention(q, k, v, scale=1.0, budget_elements=100 * 1000)
    assert seen, "the fast path was not taken"
    assert max(seen) <= 100 * 1000 < 1100 * 1000


def test_without_onednn_the_generic_path_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = torch.randn(1, 2, 1030, 8), torch.randn(1, 2, 1024, 8), torch.randn(1, 2, 1024, 12)
    fast = blocked_attention(q, k, v, scale=0.7)
    monkeypatch.setattr(torch_op, "_onednn_linear_available", lambda: False)
    generic = blocked_attention(q, k, v, scale=0.7)
    torch.testing.assert_close(generic, fast, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(generic, reference_attention(q, k, v, scale=0.7), rtol=1e-5, atol=1e-5)


def test_block_rows_respects_budget() -> None:
    for bh, nk, budget in [(1, 16_800, 1 << 24), (8, 196, 1 << 24), (1, 66_800, 1 << 20), (4, 10**9, 10)]:
        rows = block_rows(bh, nk, budget)
        assert rows >= 1
        assert rows == 1 or rows * bh * nk <= budget
    assert block_rows(1, 16_800) % 64 == 0


def test_eager_kernel_never_materialises_more_than_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_matmul = torch.matmul

    def spy(a: torch.Tensor, b: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        result = real_matmul(a, b, **kwargs)
        seen.append(result.numel())
        return result

    monkeypatch.setattr(torch, "matmul", spy)
    q, k, v = torch.randn(1, 1, 500, 8), torch.randn(1, 1, 400, 8), torch.randn(1, 1, 400, 8)
    blocked_attention(q, k, v, scale=1.0, budget_elements=400 * 64)
    assert max(seen) <= 400 * 64 < 500 * 400


def test_fp16_inputs_keep_dtype_and_accuracy() -> None:
    q, k, v = (torch.randn(1, 2, 50, 16) for _ in range(3))
    got = fused_attention(q.half(), k.half(), v.half(), scale=0.25)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), reference_attention(q, k, v, scale=0.25), rtol=2e-2, atol=2e-3)


def test_torch_export_sees_one_node() -> None:
    class Block(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return fused_attention(q, k, v, scale=0.5) * 2

    args = (torch.randn(1, 2, 10, 4), torch.randn(1, 2, 12, 4), torch.randn(1, 2, 12, 6))
    program = torch.export.export(Block(), args)
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.attn_deploy.fused_attention.default) == 1
    out = next(n for n in program.graph.nodes if n.target == torch.ops.attn_deploy.fused_attention.default)
    assert tuple(out.meta["val"].shape) == (1, 2, 10, 6)


def test_gradients_match_reference() -> None:
    q, k, v = (torch.randn(1, 2, 9, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(9, 9, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda *t: fused_attention(*t, scale=0.5), (q, k, v, bias))
