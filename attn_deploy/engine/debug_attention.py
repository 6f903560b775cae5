"""``build-trt --debug-attention``: keep each attention's output as an engine output, and only those.

Marking every tensor as an output (Polygraphy's way to find where parity breaks) stops TensorRT from
fusing across them and exhausts memory; marking the attention outputs alone keeps the rest of the
network as it would be built. ``check --per-attention`` then compares them (``check/per_attention.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.attention_outputs import AttentionPoint, onnx_points
from attn_deploy.errors import InputError


def debug_points(artifact: Artifact) -> list[AttentionPoint]:
    """The attentions whose outputs the engine will keep; ``InputError`` when the model has none."""
    points = onnx_points(artifact)
    if not points:
        where = artifact.path or artifact.manifest.source
        raise InputError(f"--debug-attention: {where} has no FusedAttention node to keep the output of; export it with `attn-deploy export`")
    return points


def mark_attention_outputs(network: Any, points: Sequence[AttentionPoint]) -> tuple[list[AttentionPoint], list[str]]:
    """Mark each point's tensor of the parsed ``network`` as an output: (points kept, tensors the network lacks)."""
    tensors = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            if tensor is not None:
                tensors[tensor.name] = tensor
    kept, missing = [], []
    for point in points:
        tensor = tensors.get(point.tensor)
        if tensor is None:
            missing.append(point.tensor)
            continue
        if not tensor.is_network_output:
            network.mark_output(tensor)
        kept.append(point)
    return kept, missing


def network_outputs(network: Any) -> list[str]:
    return [network.get_output(i).name for i in range(network.num_outputs)]
