"""An ensemble's steps checked against the configurations of the models it chains, before anything is written.

Triton checks these only when it loads the ensemble; here a wrong name, data type or shape between
two steps is an ``InputError`` at ``package`` time. Each step's model must be in the repository, each
input it reads must be an ensemble input or an earlier step's output with the same data type and
compatible dims (-1 matches any size), each output it maps must be one of its model's, and every
ensemble output must be produced. The ensemble cannot batch more than any model it chains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attn_deploy.errors import InputError
from attn_deploy.package.config import schema

_Tensor = tuple[str, list[int]]


def _compatible(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))


def _tensors(io: Any) -> dict[str, _Tensor]:
    pb = schema()
    return {t.name: (pb.DataType.Name(t.data_type), list(t.dims)) for t in io}


def _match(where: str, got: _Tensor, want: _Tensor) -> None:
    if got[0] != want[0] or not _compatible(got[1], want[1]):
        raise InputError(f"{where}: {got[0]} {got[1]} does not fit {want[0]} {want[1]}")


def verify_ensemble(config: Any, configs: Mapping[str, Any]) -> None:
    """``config`` (an ensemble's ``ModelConfig``) chains models of ``configs`` (by name) with matching names, dtypes and dims."""
    name = config.name
    known = _tensors(config.input)
    for i, step in enumerate(config.ensemble_scheduling.step):
        where = f"{name} step {i + 1} ({step.model_name})"
        model = configs.get(step.model_name)
        if model is None:
            raise InputError(f"{where}: no model {step.model_name!r} in the repository")
        if 0 < model.max_batch_size < config.max_batch_size or (config.max_batch_size > 0 and model.max_batch_size == 0):
            raise InputError(f"{where}: the ensemble batches up to {config.max_batch_size}, the model up to {model.max_batch_size}")
        inputs, outputs = _tensors(model.input), _tensors(model.output)
        if set(step.input_map) != set(inputs):
            raise InputError(f"{where}: maps inputs {sorted(step.input_map)}, the model takes {sorted(inputs)}")
        for key, tensor in step.input_map.items():
            if tensor not in known:
                raise InputError(f"{where}: input {key} reads {tensor!r}, which no earlier step or ensemble input provides")
            _match(f"{where} input {key}", known[tensor], inputs[key])
        for key, tensor in step.output_map.items():
            if key not in outputs:
                raise InputError(f"{where}: maps output {key!r}, the model's outputs are {sorted(outputs)}")
            known[tensor] = outputs[key]
    for tensor, spec in _tensors(config.output).items():
        if tensor not in known:
            raise InputError(f"{name}: output {tensor!r} is produced by no step")
        _match(f"{name} output {tensor}", known[tensor], spec)


def verify_ensembles(configs: Mapping[str, Any]) -> None:
    """Every ensemble among ``configs`` (parsed ``ModelConfig`` by model name) chains the others correctly."""
    for config in configs.values():
        if config.platform == "ensemble":
            verify_ensemble(config, configs)
