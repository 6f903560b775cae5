"""The PyTorch module each exported node came from, read off what the exporters record.

The dynamo exporter stores a node's module path in its ``pkg.torch.onnx.name_scopes`` metadata
(``['', 'blocks', 'blocks.0', 'softmax']``: the modules, then the op); the TorchScript exporter
names nodes by scope (``/blocks/blocks.0/q/MatMul``). ``finalize`` drops the metadata, so export
reads the scopes before it.
"""

from __future__ import annotations

import ast

import onnx

_DYNAMO_SCOPES = "pkg.torch.onnx.name_scopes"


def _dynamo_module(value: str) -> str | None:
    try:
        scopes = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or not scopes:
        return None
    modules = [str(s) for s in scopes[:-1] if s]  # the last entry is the op itself
    return modules[-1] if modules else ""


def _torchscript_module(name: str) -> str:
    """``/blocks/blocks.0/q/MatMul`` -> ``blocks.0.q``: a part is either the full name or relative to its parent."""
    full = ""
    for part in name.split("/")[1:-1]:
        full = part if not full or part.startswith(full + ".") else f"{full}.{part}"
    return full


def module_scopes(model: onnx.ModelProto) -> dict[str, str]:
    """``{node name: qualified module name}`` for the main graph's nodes whose exporter recorded one."""
    scopes: dict[str, str] = {}
    for node in model.graph.node:
        recorded = next((p.value for p in node.metadata_props if p.key == _DYNAMO_SCOPES), None)
        module = _dynamo_module(recorded) if recorded is not None else None
        if module is None and node.name.startswith("/"):
            module = _torchscript_module(node.name)
        if module is not None and node.name:
            scopes[node.name] = module
    return scopes
