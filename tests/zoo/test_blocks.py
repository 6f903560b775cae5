"""Each block computes what its paper says, in eval (fused op) and training (explicit map) mode."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from attn_deploy.zoo import (
    CrossRegionAttention,
    DynamicAttention,
    MultiScaleAttention,
    SelfAttention,
    SmallObjectAttention,
    attention_entropy,
)


def _sagan_by_hand(block: SelfAttention, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    b, c, h, w = x.shape
    q = block.query(x).flatten(2) / temperature  # [B, C/8, N]
    k = block.key(x).flatten(2)
    v = block.value(x).flatten(2)  # [B, C, N]
    attn = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # [B, N, N]
    out = torch.bmm(v, attn.transpose(1, 2)).view(b, c, h, w)
    return x + block.gamma * out


def test_self_attention_starts_as_identity_and_matches_sagan() -> None:
    block = SelfAttention(32).eval()
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    torch.testing.assert_close(block(x), _sagan_by_hand(block, x), rtol=1e-5, atol=1e-5)


def test_dynamic_attention_divides_scores_by_temperature() -> None:
    block = DynamicAttention(16, temperature=2.5).eval()
    with torch.no_grad():
        block.gamma.fill_(1.0)
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(block(x), _sagan_by_hand(block, x, temperature=2.5), rtol=1e-5, atol=1e-5)


def test_training_mode_returns_attention_map_and_same_output() -> None:
    block = SelfAttention(16, return_attention=True)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    x = torch.randn(1, 16, 3, 4)
    y_train, attn = block.train()(x)
    assert attn.shape == (1, 1, 12, 12)
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, 1, 12))
    torch.testing.assert_close(block.eval()(x), y_train, rtol=1e-5, atol=1e-5)
    y_train.sum().backward()
    assert block.query.weight.grad is not None


def test_attention_entropy_bounds() -> None:
    uniform = torch.full((2, 5, 8), 1 / 8)
    assert attention_entropy(uniform).item() == pytest.approx(math.log(8), rel=1e-5)
    one_hot = F.one_hot(torch.arange(5) % 8, 8).float()
    assert attention_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-5)


def test_cross_region_is_a_non_local_block_per_strip() -> None:
    block = CrossRegionAttention(8, strips=2).eval()
    torch.nn.init.normal_(block.out.weight)
    x = torch.randn(1, 8, 4, 3)
    want = []
    for strip in x.split(2, dim=2):  # by hand: embedded Gaussian non-local on each strip
        theta, phi, g = (conv(strip).flatten(2) for conv in (block.theta, block.phi, block.g))
        f = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)
        y = (g @ f.transpose(1, 2)).view(1, -1, 2, 3)
        want.append(strip + block.out(y))
    torch.testing.assert_close(block(x), torch.cat(want, dim=2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of strips"):
        block(torch.randn(1, 8, 5, 3))


def test_multi_scale_applies_one_block_per_level() -> None:
    msa = MultiScaleAttention(16, ["0", "1"]).eval()
    for blk in msa.blocks.values():
        torch.nn.init.constant_(blk.gamma, 1.0)
    feats = OrderedDict([("0", torch.randn(1, 16, 8, 8)), ("1", torch.randn(1, 16, 4, 4)), ("pool", torch.randn(1, 16, 2, 2))])
    out = msa(feats)
    assert list(out) == ["0", "1", "pool"]
    torch.testing.assert_close(out["0"], msa.blocks["0"](feats["0"]))
    assert not torch.allclose(out["0"], feats["0"])
    torch.testing.assert_close(out["pool"], feats["pool"])


def test_small_object_attention_is_dilated_conv_then_attention() -> None:
    block = SmallObjectAttention(16, dilation=2).eval()
    x = torch.randn(1, 16, 8, 8)
    assert block.context.dilation == (2, 2)
    torch.testing.assert_close(block(x), block.attention(block.context(x)))
    assert block(x).shape == x.shape
