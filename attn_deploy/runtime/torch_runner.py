"""PyTorch eager runner: the source model, its outputs flattened and named by the model's own output names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from attn_deploy.errors import InputError, first_line
from attn_deploy.runtime.base import Feeds, RunnerBase


def _flatten(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten(v)]
    return []


class TorchRunner(RunnerBase):
    """Runs ``module`` (already in memory) under ``torch.no_grad`` with inputs in ``input_names`` order.

    ``output_names`` name the flattened outputs in the module's own order: the names the model
    declares (a zoo entry's), or an order a trusted manifest recorded. Empty means nobody knows
    which output is which: a single output is still unambiguous, several are an ``InputError``.
    """

    name = "torch"

    def __init__(self, module: nn.Module, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        self.module = module
        self._inputs = list(input_names)
        self._outputs = list(output_names)

    def _activate(self) -> None:
        try:
            self.module.eval()
        except NotImplementedError:  # a torch.export program (.pt2): traced once, it has no train/eval switch
            pass

    @property
    def input_names(self) -> list[str]:
        return self._inputs

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def infer(self, feeds: Feeds) -> Feeds:
        self.activate()
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in self._inputs]
        try:
            with torch.no_grad():
                tensors = _flatten(self.module(*args))
        except Exception as e:  # noqa: BLE001 - the model refused these inputs (a .pt2 takes only its export shapes)
            shapes = ", ".join("x".join(map(str, a.shape)) for a in args)
            raise InputError(
                f"the PyTorch model failed on inputs of shape {shapes} ({type(e).__name__}: {first_line(e)}); "
                "run it at shapes it takes (--input-shape, --batch)"
            ) from None
        if len(self._outputs) == len(tensors):
            names = self._outputs
        elif not self._outputs and len(tensors) > 1:
            raise InputError(
                f"the PyTorch model returns {len(tensors)} unnamed outputs and no attn-deploy manifest records their order, "
                "so they cannot be matched to the ONNX outputs by name; check the .onnx `attn-deploy export` wrote for it"
            )
        else:
            names = [f"output_{i}" for i in range(len(tensors))]
        return {n: t.numpy() for n, t in zip(names, tensors)}


class RecordingTorchRunner(TorchRunner):
    """A ``TorchRunner`` that also returns each attention's output (``check --per-attention``).

    The model runs with SDPA and ``nn.MultiheadAttention`` routed through the op, as at export, and
    ``ops/recording.py`` records every call: call i's output is returned as ``attention_tensors[i]``
    (the ONNX tensor name of the i-th routed FusedAttention node). When the model makes another
    number of calls, no attention is returned and ``mismatch`` says why.
    """

    def __init__(self, module: nn.Module, input_names: Sequence[str], output_names: Sequence[str], attention_tensors: Sequence[str]) -> None:
        super().__init__(module, input_names, output_names)
        self.attention_tensors = list(attention_tensors)
        self.mismatch: str | None = None

    def infer(self, feeds: Feeds) -> Feeds:
        from attn_deploy.export.routing import attention_routed_through_op
        from attn_deploy.ops.recording import record_attention

        with attention_routed_through_op(self.module), record_attention(self.module, keep_inputs=False) as calls:
            outputs = super().infer(feeds)
        if len(calls) != len(self.attention_tensors):
            self.mismatch = f"PyTorch made {len(calls)} attention call(s) for {len(self.attention_tensors)} routed FusedAttention node(s)"
            return outputs
        outputs.update({name: call.output.numpy() for name, call in zip(self.attention_tensors, calls)})
        return outputs
