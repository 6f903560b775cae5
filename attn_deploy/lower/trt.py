"""Lower FusedAttention nodes for TensorRT / TensorRT-RTX, one choice per node (DESIGN §3).

* ``plugin``: a FusedAttention plugin creator is registered, so the node stays; the ONNX parser
  prefers a registered creator (name, ``plugin_namespace``, ``plugin_version``) over the body.
* ``native-attention``: dk == dv and float16 inputs: ONNX ``Attention`` (opset 23), which
  TensorRT builds as its fused attention layer. TensorRT refuses it for float32 inputs and for
  dk != dv, and rejects the ``softmax_precision`` attribute ("not supported in TensorRT
  Attention"), so the softmax precision inside is TensorRT's choice, not the contract's.
* ``body``: the node stays and expands into its function at parse time. The exported body is the
  memory-bounded query-block ``Loop``, which TensorRT-RTX 1.7 cannot build (its parser rejects a
  Loop without a condition input, and with one the builder fails an internal assertion), so the
  function is replaced by :func:`~attn_deploy.ops.bodies.plain_body`: one float32 MatMul-Softmax-MatMul. Where the
  shapes are static and the score matrix exceeds :data:`TRT_SCORE_BLOCK_ELEMENTS`, the node is
  instead inlined as that pattern over static query blocks (Slice, ..., Concat), so no layer needs
  more than one block's scores whether or not TensorRT fuses the pattern; TensorRT reuses
  activation memory between the blocks, which run one after another.

The input dtype is the site's (read off the graph); where the graph does not say, the Artifact's
precision (``fp16`` after the fp16 stage) decides, so ``--fp16`` is decided once, by that stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import onnx
from onnx import helper, version_converter

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.graph import (
    default_opset,
    fused_attention_nodes,
    typed_values,
)
from attn_deploy.artifact.manifest import Precision
from attn_deploy.artifact.sites import AttentionSite
from attn_deploy.artifact.stage import StageResult
from attn_deploy.ops.bodies import CONTRACT_ATTRIBUTES, inline_blocked_nodes, plain_body
from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION, block_rows

Choice = Literal["plugin", "native-attention", "body"]
#: ONNX opset that introduced ``Attention``.
ATTENTION_OPSET = 23
#: Largest float32 score block (elements) a TensorRT body materialises: 64 Mi = 256 MiB. Larger
#: than ONNX Runtime's 32 MiB because every block is a separate set of layers in the engine.
TRT_SCORE_BLOCK_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class NodeLowering:
    """How one FusedAttention node is built, and why."""

    node: str
    choice: Choice
    reason: str
    dk: int | str | None
    dv: int | str | None
    dtype: str
    has_bias: bool
    #: Static query blocks the body is inlined as (1: the whole score matrix at once).
    query_blocks: int = 1
    #: The choice the builder rejected for this node, when it fell back to this one.
    fell_back_from: Choice | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


#: Input types TensorRT's native attention layer builds (it refuses float32).
NATIVE_ATTENTION_DTYPES = ("float16", "bfloat16")


def native_attention_blocker(site: AttentionSite) -> str | None:
    """Why TensorRT's native attention layer cannot take ``site`` (None: it can)."""
    if site.dtype not in NATIVE_ATTENTION_DTYPES:
        return f"{site.dtype or 'unknown'} inputs: TensorRT's native attention needs float16 or bfloat16 (build with --fp16)"
    if not site.head_sizes_match:
        return f"dk={site.dk} != dv={site.dv}: TensorRT's native attention needs K and V of one shape"
    return None


def _query_blocks(site: AttentionSite, budget: int) -> int:
    b, h, nq, nk = site.B, site.H, site.Nq, site.Nk
    if not (isinstance(b, int) and isinstance(h, int) and isinstance(nq, int) and isinstance(nk, int)) or min(b, h, nq, nk) <= 0:
        return 1
    if b * h * nq * nk <= budget:
        return 1
    rows = min(nq, block_rows(b * h, nk, budget))
    return -(-nq // rows)


#: The input dtype a site has when the graph does not say, by the Artifact's precision.
_PRECISION_DTYPES: dict[str, str] = {"fp16": "float16", "fp32": "float32"}


def plan_site(
    site: AttentionSite, *, plugin: bool, budget: int = TRT_SCORE_BLOCK_ELEMENTS, precision: Precision | None = None, rejected: str | None = None
) -> NodeLowering:
    """How TensorRT builds one site, and why (``precision``: the Artifact's, for a site of unknown dtype).

    ``rejected``: why the builder refused this node's native attention; the node gets the body.
    """
    if site.dtype is None and precision is not None and precision in _PRECISION_DTYPES:
        site = dataclasses.replace(site, dtype=_PRECISION_DTYPES[precision])
    blocker = native_attention_blocker(site)
    fell_back_from: Choice | None = None
    if plugin:
        choice, reason = "plugin", "a FusedAttention plugin creator is registered"
    elif blocker is not None:
        choice, reason = "body", blocker
    elif rejected is not None:
        choice, reason, fell_back_from = "body", f"fell back from native attention, which the builder rejected: {rejected}", "native-attention"
    else:
        choice, reason = "native-attention", f"{site.dtype} and dk == dv == {site.dk}"
    blocks = _query_blocks(site, budget) if choice == "body" else 1
    if blocks > 1:
        reason += f"; {blocks} query blocks (score matrix {(site.score_matrix_bytes or 0) / 2**30:.1f} GiB in float32)"
    return NodeLowering(site.name, choice, reason, site.dk, site.dv, site.dtype or "unknown", site.has_bias, blocks, fell_back_from)  # type: ignore[arg-type]


def trt_choice(site: AttentionSite) -> str:
    """What TensorRT would run (DESIGN §3): the plugin if loaded, else native Attention or the body."""
    native = native_attention_blocker(site) is None
    return "plugin if loaded, else " + ("native Attention (opset 23)" if native else "body")


def plan_lowering(
    artifact: Artifact, *, plugin: bool, budget: int = TRT_SCORE_BLOCK_ELEMENTS, rejected: Mapping[str, str] | None = None
) -> list[NodeLowering]:
    """Choose, for every FusedAttention node in graph order, how TensorRT builds it.

    ``rejected``: node name -> why the builder refused its native attention (those get the body).
    """
    rejected = rejected or {}
    return [
        plan_site(site, plugin=plugin, budget=budget, precision=artifact.precision, rejected=rejected.get(site.name))
        for site in artifact.sites
        if site.domain == DOMAIN
    ]


def _inline_blocked(model: onnx.ModelProto, plans: list[NodeLowering], sites: list[AttentionSite]) -> None:
    blocked = {p.node: p for p in plans if p.choice == "body" and p.query_blocks > 1}
    if not blocked:
        return
    values = typed_values(model)
    by_name = {site.name: site for site in sites}
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        plan = blocked.get(node.name or node.output[0]) if node.domain == DOMAIN and node.op_type == OP_TYPE else None
        if plan is None:
            new_nodes.append(node)
            continue
        bias_value = values.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        bias_shape = bias_value.dims if bias_value is not None else None
        bias_rows = bias_shape[-2] if bias_shape and len(bias_shape) >= 2 and isinstance(bias_shape[-2], int) else None
        nq = by_name[node.name or node.output[0]].Nq
        assert isinstance(nq, int)  # query_blocks > 1 only when Nq is static
        new_nodes.extend(inline_blocked_nodes(node, plan.query_blocks, nq, bias_rows))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)


def _to_attention_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Raise the default opset to 23 (the version converter cannot see through local functions)."""
    if default_opset(model) >= ATTENTION_OPSET:
        return model
    functions = list(model.functions)
    del model.functions[:]
    converted = version_converter.convert_version(model, ATTENTION_OPSET)
    converted.functions.extend(functions)
    converted.ir_version = model.ir_version
    return converted


def lower_for_tensorrt(
    artifact: Artifact, *, plugin: bool, budget: int = TRT_SCORE_BLOCK_ELEMENTS, rejected: Mapping[str, str] | None = None
) -> StageResult[list[NodeLowering]]:
    """``artifact`` ready for TensorRT's ONNX parser (stage ``lower:tensorrt``); the summary is the per-node plan.

    ``rejected``: as for :func:`plan_lowering` (the engine build's per-node fallback).
    """
    model = onnx.ModelProto.FromString(artifact.proto.SerializeToString())
    plans = plan_lowering(artifact, plugin=plugin, budget=budget, rejected=rejected)
    _inline_blocked(model, plans, artifact.sites)
    if any(p.choice == "native-attention" for p in plans):
        model = _to_attention_opset(model)
    by_name = {p.node: p for p in plans}
    for node in fused_attention_nodes(model):
        if by_name[node.name or node.output[0]].choice != "native-attention":
            continue
        scale = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "scale")
        inputs = list(node.input[:4]) if len(node.input) > 3 and node.input[3] else list(node.input[:3])
        node.CopyFrom(helper.make_node("Attention", inputs, [node.output[0]], name=node.name, scale=float(scale)))
    kept = fused_attention_nodes(model)
    others = [f for f in model.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)]
    del model.functions[:]
    model.functions.extend(others)
    if kept:
        with_bias = any(len(n.input) > 3 and n.input[3] for n in kept)
        model.functions.append(
            plain_body(default_opset(model), with_bias=with_bias, domain=DOMAIN, name=OP_TYPE, attributes=CONTRACT_ATTRIBUTES)
        )
        if not any(i.domain == DOMAIN for i in model.opset_import):
            model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    from attn_deploy.lower.prune import prune  # onnx-ir: not loaded by ``inspect``, which reads trt_choice

    return StageResult(artifact.evolve(prune(model), stage="lower:tensorrt"), plans)
