"""The NumPy model of the CUDA kernel's tiling against the op's reference (runs on any CPU)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from attn_deploy.ops import reference_attention
from attn_deploy.trt_plugin.sources import DEFAULT_PLUGIN_DIR, KERNEL_HEADER, KERNEL_SOURCE
from attn_deploy.trt_plugin.tiling_model import TileConstants, broadcast_strides, read_tile_constants, tiled_attention

TILES = read_tile_constants()


def _reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None, scale: float) -> np.ndarray:
    t = torch.from_numpy
    return reference_attention(t(q), t(k), t(v), None if bias is None else t(bias), scale=scale).numpy()


def _inputs(shape: tuple[int, int, int, int, int, int], dtype: type, seed: int = 0) -> tuple[np.ndarray, ...]:
    b, h, nq, nk, dk, dv = shape
    rng = np.random.default_rng(seed)
    # Spread scores so the running max moves between tiles (the rescale path is exercised).
    q = (rng.standard_normal((b, h, nq, dk)) * 2).astype(dtype)
    k = (rng.standard_normal((b, h, nk, dk)) * 2).astype(dtype)
    v = rng.standard_normal((b, h, nk, dv)).astype(dtype)
    return q, k, v


def test_constants_come_from_the_kernel_header() -> None:
    header = (DEFAULT_PLUGIN_DIR / KERNEL_HEADER).read_text()
    assert TILES == TileConstants(block_q=32, block_k=32, threads_per_row=4, max_head_dim=256)
    assert "constexpr int kThreads = kBlockQ * kThreadsPerRow;" in header
    assert TILES.block_k % TILES.threads_per_row == 0 and 32 % TILES.threads_per_row == 0
    # The .cu takes its tile sizes from the header only (no second definition to drift).
    source = (DEFAULT_PLUGIN_DIR / KERNEL_SOURCE).read_text()
    assert f'#include "{KERNEL_HEADER}"' in source
    assert not re.search(r"constexpr\s+int\s+k(BlockQ|BlockK|ThreadsPerRow|MaxHeadDim)\s*=", source)


def test_header_without_constants_is_rejected(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "k.h"
    bad.write_text("constexpr int kBlockQ = 32;\n")
    with pytest.raises(ValueError, match="kBlockK"):
        read_tile_constants(bad)


# (B, H, Nq, Nk, dk, dv): tile multiples, ragged last tiles, fewer keys than a tile, SAGAN's dk != dv, the largest heads.
SHAPES = [
    (1, 1, 1, 1, 1, 1),
    (1, 1, 64, 64, 64, 64),
    (2, 3, 33, 65, 32, 256),
    (1, 2, 100, 31, 16, 8),
    (1, 1, 5, 200, 8, 40),
    (2, 1, 70, 97, 256, 256),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_reference(shape: tuple[int, ...]) -> None:
    q, k, v = _inputs(shape, np.float32)
    scale = 1.0 / np.sqrt(shape[4])
    got = tiled_attention(q, k, v, scale=scale)
    want = _reference(q, k, v, None, scale)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("shape", [(2, 3, 33, 65, 32, 256), (1, 2, 47, 40, 64, 24)], ids=lambda s: "x".join(map(str, s)))
def test_fp16_inputs_accumulate_in_fp32(shape: tuple[int, ...]) -> None:
    q, k, v = _inputs(shape, np.float16, seed=1)
    rng = np.random.default_rng(2)
    bias = rng.standard_normal((shape[2], shape[3])).astype(np.float16)
    got = tiled_attention(q, k, v, bias, scale=0.125)
    want = _reference(q, k, v, bias, 0.125)
    assert got.dtype == np.float16
    # Both round a float32 result to fp16 once: at most one fp16 ulp apart.
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-3)
    assert np.isfinite(got).all()


@pytest.mark.parametrize(
    "bias_shape",
    [(45,), (37, 45), (1, 3, 1, 45), (2, 1, 37, 45), (2, 3, 37, 45), (3, 1, 1), (2, 3, 37, 1), (1,), ()],
    ids=lambda s: "x".join(map(str, s)),
)
def test_bias_broadcasts_through_strides(bias_shape: tuple[int, ...]) -> None:
    q, k, v = _inputs((2, 3, 37, 45, 16, 24), np.float32)
    bias = np.asarray(np.random.default_rng(3).standard_normal(bias_shape) * 3, dtype=np.float32)
    got = tiled_attention(q, k, v, bias, scale=0.25)
    np.testing.assert_allclose(got, _reference(q, k, v, bias, 0.25), rtol=2e-5, atol=2e-5)


def test_broadcast_strides() -> None:
    full = (2, 3, 37, 45)
    assert broadcast_strides((2, 3, 37, 45), full) == (3 * 37 * 45, 37 * 45, 45, 1)
    assert broadcast_strides((45,), full) == (0, 0, 0, 1)
    assert broadcast_strides((1, 3, 1, 45), full) == (0, 45, 0, 1)
    assert broadcast_strides((2, 1, 37, 1), full) == (37, 0, 1, 0)
    assert broadcast_strides((), full) == (0, 0, 0, 0)  # the scalar zero bias finalize() gives bias-less nodes
    with pytest.raises(ValueError, match="does not broadcast"):
        broadcast_strides((44,), full)
    with pytest.raises(ValueError, match="rank"):
        broadcast_strides((1, 2, 3, 37, 45), full)


def test_masked_leading_tiles_and_fully_masked_rows() -> None:
    b, h, nq, nk = 1, 2, 40, 100
    q, k, v = _inputs((b, h, nq, nk, 8, 12), np.float32)
    mask = np.zeros((nq, nk), dtype=np.float32)
    mask[:, : TILES.block_k + 5] = -np.inf  # the whole first key tile masked: the -inf - -inf trap
    mask[3, :] = -np.inf                    # a fully masked row: softmax gives NaN, so must the kernel
    got = tiled_attention(q, k, v, mask, scale=0.3)
    want = _reference(q, k, v, mask, 0.3)
    assert np.isnan(got[:, :, 3]).all() and np.isnan(want[:, :, 3]).all()
    keep = np.ones(nq, dtype=bool)
    keep[3] = False
    np.testing.assert_allclose(got[:, :, keep], want[:, :, keep], rtol=2e-5, atol=2e-5)


def test_large_scores_do_not_overflow() -> None:
    # exp(scale * q.k) overflows float32 for these scores unless the running max is subtracted.
    q, k, v = _inputs((1, 1, 33, 70, 16, 16), np.float32)
    got = tiled_attention(q * 40, k * 40, v, scale=1.0)
    want = _reference(q * 40, k * 40, v, None, 1.0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_rejects_heads_larger_than_the_kernel_takes() -> None:
    q, k, v = _inputs((1, 1, 4, 4, TILES.max_head_dim + 1, 8), np.float32)
    with pytest.raises(ValueError, match="head sizes"):
        tiled_attention(q, k, v, scale=1.0)
