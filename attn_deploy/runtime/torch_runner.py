"""PyTorch eager runner: the source model, outputs flattened to the exported output names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

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
    """Runs ``module`` (already in memory) under ``torch.no_grad`` with inputs in ``input_names`` order."""

    name = "torch"

    def __init__(self, module: nn.Module, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        self.module = module
        self._inputs = list(input_names)
        self._outputs = list(output_names)

    def _activate(self) -> None:
        self.module.eval()

    @property
    def input_names(self) -> list[str]:
        return self._inputs

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def infer(self, feeds: Feeds) -> Feeds:
        self.activate()
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in self._inputs]
        with torch.no_grad():
            tensors = _flatten(self.module(*args))
        names = self._outputs if len(self._outputs) == len(tensors) else [f"output_{i}" for i in range(len(tensors))]
        return {n: t.numpy() for n, t in zip(names, tensors)}
