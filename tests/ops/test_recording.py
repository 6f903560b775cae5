"""record_attention: every op call, in order, with its module; probabilities for chosen rows only."""

from __future__ import annotations

import torch
from torch import nn

from attn_deploy.export.routing import attention_routed_through_op
from attn_deploy.ops.recording import record_attention
from attn_deploy.ops.torch_op import reference_attention


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.qkv, self.heads = nn.Linear(dim, 3 * dim), heads

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, n, c)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = _Block(32, 4), _Block(32, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.second(self.first(x, mask))
        return out


def test_records_each_routed_call_with_its_module_and_inputs() -> None:
    torch.manual_seed(0)
    net, x = _Net().eval(), torch.randn(2, 10, 32)
    mask = torch.randn(2, 1, 10, 10)  # an additive bias broadcast over heads
    with torch.no_grad(), attention_routed_through_op(net), record_attention(net) as calls:
        out = net(x, mask)
    assert [(c.index, c.module) for c in calls] == [(0, "first"), (1, "second")]
    assert calls[0].q is not None and tuple(calls[0].q.shape) == (2, 4, 10, 8)
    assert calls[0].bias is not None and calls[1].bias is None
    with torch.no_grad():
        expected = net(x, mask)  # plain SDPA, no recording
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    first = calls[0]
    assert first.q is not None and first.k is not None and first.v is not None
    torch.testing.assert_close(first.output, reference_attention(first.q, first.k, first.v, first.bias,
                                                                 scale=first.scale), rtol=1e-5, atol=1e-5)


def test_probabilities_are_the_rows_of_the_full_map() -> None:
    torch.manual_seed(1)
    net, x, mask = _Net().eval(), torch.randn(1, 12, 32), torch.randn(1, 4, 12, 12)
    with torch.no_grad(), attention_routed_through_op(net), record_attention(net) as calls:
        net(x, mask)
    call = calls[0]
    assert call.q is not None and call.k is not None and call.bias is not None
    full = torch.softmax(call.q @ call.k.transpose(-1, -2) * call.scale + call.bias, dim=-1)
    rows = call.probabilities([3, 0, 11])
    assert tuple(rows.shape) == (1, 4, 3, 12)
    torch.testing.assert_close(rows, full[:, :, [3, 0, 11]], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rows.sum(-1), torch.ones(1, 4, 3))


def test_outputs_only_and_nothing_recorded_outside() -> None:
    net, x, mask = _Net().eval(), torch.randn(1, 6, 32), torch.zeros(1, 1, 6, 6)
    with torch.no_grad(), attention_routed_through_op(net), record_attention(net, keep_inputs=False) as calls:
        net(x, mask)
    assert len(calls) == 2 and calls[0].q is None
    try:
        calls[0].probabilities([0])
    except ValueError as e:
        assert "keep_inputs" in str(e)
    else:
        raise AssertionError("probabilities without inputs must refuse")
    with torch.no_grad(), record_attention(net) as unrouted:
        net(x, mask)  # plain SDPA never reaches the op
    assert unrouted == []
