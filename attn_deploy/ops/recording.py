"""Record every FusedAttention call of a PyTorch forward pass: its inputs, its output and its module.

``record_attention(model)`` watches the dispatcher for ``attn_deploy::fused_attention``, so it sees the
op however it was reached: called by a zoo block, or by SDPA / ``nn.MultiheadAttention`` routed through
it (``export/routing.py``). Calls come in the order the forward pass makes them, which is the order
their FusedAttention nodes take in an exported graph.

Two readers: ``check --per-attention`` compares each call's output with its ONNX node's, and
``visualize`` computes rows of softmax(QKᵀ) for chosen queries from the recorded Q, K and bias
(``AttentionCall.probabilities``), so no N×N map is ever held.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from attn_deploy.ops.torch_op import fused_attention

_OP = fused_attention._opoverload


@dataclass(frozen=True)
class AttentionCall:
    """One call of the op: ``q [B,H,Nq,dk]``, ``k [B,H,Nk,dk]``, ``v [B,H,Nk,dv]``, ``output [B,H,Nq,dv]``.

    ``module`` is the qualified name (as in ``model.named_modules()``) of the innermost module that
    was running, ``""`` for the model itself. The inputs are ``None`` when recording was asked to
    keep outputs only. ``module_input`` is the shape of that module's first tensor argument (a
    SAGAN block's ``[B, C, h, w]`` says which grid its N = h·w tokens lie on), None when it had none."""

    index: int
    module: str
    output: Tensor
    q: Tensor | None
    k: Tensor | None
    v: Tensor | None
    bias: Tensor | None
    scale: float
    module_input: tuple[int, ...] | None = None

    def probabilities(self, rows: Sequence[int] | Tensor) -> Tensor:
        """softmax(scale·q[..., rows, :]·kᵀ + bias[..., rows, :]) as ``[B, H, len(rows), Nk]`` (float32,
        float64 for float64 inputs): the rows asked for only, each summing to 1 (NaN where a row is
        fully masked, as the op defines)."""
        if self.q is None or self.k is None:
            raise ValueError("this call was recorded without its inputs: record with keep_inputs=True")
        index = torch.as_tensor(rows, dtype=torch.long, device=self.q.device)
        dtype = torch.float64 if self.q.dtype == torch.float64 else torch.float32
        q = self.q.index_select(-2, index).to(dtype)
        scores = torch.matmul(q, self.k.to(dtype).transpose(-1, -2)) * self.scale
        if self.bias is not None:
            bias = self.bias
            if bias.shape[-2] != 1:  # a bias broadcast over queries keeps its one row
                bias = bias.index_select(-2, index)
            scores = scores + bias.to(dtype)
        return torch.softmax(scores, dim=-1)


class _Recorder(TorchDispatchMode):
    def __init__(self, calls: list[AttentionCall], modules: list[tuple[str, tuple[int, ...] | None]], keep_inputs: bool) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.calls, self.modules, self.keep_inputs = calls, modules, keep_inputs

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is _OP:
            q, k, v, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            keep = self.keep_inputs
            module, module_input = self.modules[-1] if self.modules else ("", None)
            self.calls.append(AttentionCall(
                index=len(self.calls), module=module, output=out.detach(),
                q=q.detach() if keep else None, k=k.detach() if keep else None, v=v.detach() if keep else None,
                bias=bias.detach() if keep and bias is not None else None, scale=float(kwargs["scale"]),
                module_input=module_input,
            ))
        return out


@contextlib.contextmanager
def record_attention(model: nn.Module, *, keep_inputs: bool = True) -> Iterator[list[AttentionCall]]:
    """Inside, every call of the op made while ``model`` runs is appended to the yielded list.

    Keeping the inputs (the default) costs O(N·d) per call, never O(N²)."""
    names = {id(m): name for name, m in model.named_modules()}
    stack: list[tuple[str, tuple[int, ...] | None]] = []
    calls: list[AttentionCall] = []

    def enter(module: nn.Module, args: Any) -> None:
        first = next((a for a in args if isinstance(a, Tensor)), None)
        shape = tuple(first.shape) if first is not None else None
        stack.append((names[id(module)], shape) if id(module) in names else (stack[-1] if stack else ("", None)))

    def leave(module: nn.Module, _args: Any, _out: Any) -> None:
        if stack:
            stack.pop()

    handles = [nn.modules.module.register_module_forward_pre_hook(enter),
               nn.modules.module.register_module_forward_hook(leave, always_call=True)]
    try:
        with _Recorder(calls, stack, keep_inputs):
            yield calls
    finally:
        for handle in handles:
            handle.remove()
