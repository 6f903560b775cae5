"""``lower --target ort``: rewrite each FusedAttention node to the fastest ONNX Runtime implementation.

Each node becomes a call of a model-local function in domain ``attn_deploy.ort`` whose op type
names the implementation (``FusedAttentionMHA``, ``FusedAttentionBlocked[Bias]``,
``FusedAttentionPlain[Bias]``), so the lowered graph stays readable and ``inspect`` can tell what
runs where. Inputs, output and node name are unchanged.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx import helper

from attn_deploy.artifact.graph import default_opset
from attn_deploy.artifact.sites import attention_sites
from attn_deploy.errors import InputError
from attn_deploy.lower.choice import (
    DEFAULT_MAX_ATTN_MEM,
    NodeChoice,
    Prefer,
    block_elements,
    choose_ort,
)
from attn_deploy.lower.prune import prune
from attn_deploy.ops.bodies import (
    MS_DOMAIN,
    ZERO_BIAS,
    blocked_body,
    mha_body,
    plain_body,
)
from attn_deploy.ops.contract import DOMAIN, LOWERED_DOMAIN, OP_TYPE


def name_attention_nodes(model: onnx.ModelProto) -> None:
    """Give nameless FusedAttention nodes their output's name (in place): choices are keyed by node name."""
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == OP_TYPE and not node.name:
            node.name = node.output[0]


def _function(op_type: str, opset: int, max_attn_mem: int) -> onnx.FunctionProto:
    with_bias = op_type.endswith("Bias")
    if op_type.startswith("FusedAttentionMHA"):
        return mha_body(opset)
    if op_type.startswith("FusedAttentionPlain"):
        return plain_body(opset, with_bias=with_bias)
    return blocked_body(opset, with_bias=with_bias, budget_elements=block_elements(max_attn_mem))


def _set_opset(model: onnx.ModelProto, domain: str, version: int | None) -> None:
    kept = [imp for imp in model.opset_import if imp.domain != domain]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    if version is not None:
        model.opset_import.append(helper.make_opsetid(domain, version))


def lower_ort(
    model: onnx.ModelProto, max_attn_mem: int = DEFAULT_MAX_ATTN_MEM, prefer: Prefer = "auto"
) -> tuple[onnx.ModelProto, list[NodeChoice]]:
    """A lowered copy of ``model`` and the choice made for each FusedAttention node (graph order)."""
    if max_attn_mem <= 0:
        raise InputError(f"--max-attn-mem must be positive (got {max_attn_mem})")
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    name_attention_nodes(lowered)
    opset = default_opset(lowered)
    if opset < 15:
        raise InputError(f"the model's opset is {opset}; lowering needs >= 15 (re-export with --opset 18)")
    choices: list[NodeChoice] = []
    for site in attention_sites(lowered):
        if site.domain != DOMAIN:
            continue  # already lowered
        try:
            choice = choose_ort(site, max_attn_mem, prefer)
        except ValueError as e:
            raise InputError(f"{e}; use --impl auto") from None
        node = lowered.graph.node[site.index]
        if site.bias_is_zero:
            del node.input[3:]  # finalize's zero bias for nodes without one: drop it (MHA takes none)
        attrs = [helper.make_attribute("scale", site.scale)]
        if choice.implementation == "mha":
            attrs.append(helper.make_attribute("num_heads", site.H))
        del node.attribute[:]
        node.attribute.extend(attrs)
        node.domain, node.op_type = LOWERED_DOMAIN, choice.op_type
        choices.append(choice)

    used = {n.op_type for n in lowered.graph.node if n.domain == LOWERED_DOMAIN}
    functions = [f for f in lowered.functions if f.domain != LOWERED_DOMAIN]  # this lowering's bodies replace any earlier ones
    functions += [_function(op, opset, max_attn_mem) for op in sorted(used)]
    del lowered.functions[:]
    lowered.functions.extend(functions)
    if not any(ZERO_BIAS in n.input for n in lowered.graph.node):
        kept = [i for i in lowered.graph.initializer if i.name != ZERO_BIAS]
        del lowered.graph.initializer[:]
        lowered.graph.initializer.extend(kept)
    _set_opset(lowered, LOWERED_DOMAIN, 1)
    lowered = ir.to_proto(prune(lowered))
    if any(op.startswith("FusedAttentionMHA") for op in used):
        _set_opset(lowered, MS_DOMAIN, 1)  # ONNX Runtime resolves the MHA body's contrib op through the model's imports
    return lowered, choices
