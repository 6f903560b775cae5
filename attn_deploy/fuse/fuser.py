"""``fuse``: an ONNX file -> the same model with FusedAttention nodes, a manifest and a summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, ShapeInferencePass

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.fileio import sha256_file
from attn_deploy.artifact.finalize import finalize
from attn_deploy.artifact.graph import (
    Dim,
    default_opset,
    dims_of,
    fused_attention_nodes,
)
from attn_deploy.artifact.io import load_onnx
from attn_deploy.artifact.manifest import SiteRecord
from attn_deploy.artifact.sites import attention_sites
from attn_deploy.artifact.stage import StageResult
from attn_deploy.errors import AttnDeployError, InputError, first_line
from attn_deploy.fuse import ms_mha, onnx_attention, sagan, sdpa
from attn_deploy.fuse.einsum import einsums_to_matmul
from attn_deploy.fuse.graph import is_op, refine_reshape_shapes
from attn_deploy.fuse.match import Attention, NearMiss
from attn_deploy.fuse.rewrite import fuse_attention
from attn_deploy.fuse.suspects import looks_like_attention

Rule = Callable[[ir.Node], Attention | None]
#: Rules anchored on Softmax, tried in order; a rule returns None when the layout is not its own
#: (sagan first: sdpa reports a transposed weights matrix that sagan did not take as a near miss).
SOFTMAX_RULES: tuple[Rule, ...] = (sagan.match, sdpa.match)
#: Rules anchored on a whole attention op.
OP_RULES: tuple[Rule, ...] = (onnx_attention.match, ms_mha.match)
#: The FusedAttention body needs CastLike.
MIN_OPSET = 15


@dataclass
class FuseOutcome:
    model: onnx.ModelProto
    #: One record per new FusedAttention node: ``pattern`` plus the manifest's fields.
    fused: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"node", "op_type", "reason", "kind"}`` for every Softmax / attention op left alone; ``kind``
    #: is ``attention`` for ``softmax(Q·Kᵀ)·V`` (see ``suspects``), ``other`` for a classifier's softmax.
    near_misses: list[dict[str, str]] = field(default_factory=list)
    #: FusedAttention nodes the input already had.
    existing: int = 0


@dataclass
class FuseResult:
    outcome: FuseOutcome
    output_path: Path | None
    manifest_path: Path | None

    @property
    def written(self) -> bool:
        return self.output_path is not None


def _candidates(graph: ir.Graph) -> list[tuple[ir.Node, tuple[Rule, ...]]]:
    found = []
    for node in graph:
        if is_op(node, "Softmax"):
            found.append((node, SOFTMAX_RULES))
        elif is_op(node, onnx_attention.OP) or is_op(node, ms_mha.OP, domain=ms_mha.DOMAIN):
            found.append((node, OP_RULES))
    return found


def _try_rules(node: ir.Node, rules: tuple[Rule, ...]) -> Attention | str:
    reason = "no rule matched"
    for rule in rules:
        try:
            match = rule(node)
        except NearMiss as e:
            reason = str(e)
            break  # every rule parses the same score side; the first reason is the one
        if match is not None:
            return match
    return reason


def fuse_graph(model: ir.Model) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """Rewrite every attention in the main graph in place: ``([(node name, pattern)], near misses)``."""
    graph = model.graph
    fused: list[tuple[str, str]] = []
    misses: list[dict[str, str]] = []
    names = {n.name for n in graph}
    for node, rules in _candidates(graph):
        outcome = _try_rules(node, rules)
        if isinstance(outcome, str):
            kind = "attention" if looks_like_attention(node) else "other"
            misses.append({"node": node.name or "", "op_type": node.op_type, "reason": outcome, "kind": kind})
            continue
        index = len(fused)
        while f"FusedAttention_{index}" in names:
            index += 1
        name = f"FusedAttention_{index}"
        names.add(name)
        fuse_attention(graph, outcome, name)
        fused.append((name, outcome.pattern))
    if fused:
        RemoveUnusedNodesPass()(model)
    return fused, misses


class FuseAttentionPass(ir.passes.InPlacePass):
    """``fuse_graph`` as an onnx-ir pass, to compose with other passes; ``fused``/``near_misses``
    hold what the last call did."""

    def __init__(self) -> None:
        super().__init__()
        self.fused: list[tuple[str, str]] = []
        self.near_misses: list[dict[str, str]] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.fused, self.near_misses = fuse_graph(model)
        return ir.passes.PassResult(model, modified=bool(self.fused))


def load_checked(path: Path) -> onnx.ModelProto:
    """Load and validate ``path``; every failure is an ``InputError`` (exit 2)."""
    return load_onnx(path, hint="pass an .onnx model", full_check=True)


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - the rules only need ranks; without them they report near misses
        return model


def fuse_model(model: onnx.ModelProto) -> FuseOutcome:
    """Fuse a validated model: a new, finalised ModelProto plus what was done and left alone."""
    existing = len(fused_attention_nodes(model))
    ir_model = ir.from_proto(_infer_shapes(model))  # the one proto -> ir conversion
    products = einsums_to_matmul(ir_model)  # so the MatMul-anchored rules see einsum attention
    if refine_reshape_shapes(ir_model.graph) or products:
        ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(ir_model)
    rewrite = FuseAttentionPass()
    rewrite(ir_model)
    fused, misses = rewrite.fused, rewrite.near_misses
    result = ir.to_proto(ir_model)  # the one ir -> proto conversion
    if fused and default_opset(result) < MIN_OPSET:
        raise InputError(f"the model's opset {default_opset(result)} is older than {MIN_OPSET}; convert it with onnx.version_converter first")
    result = finalize(result)
    try:
        onnx.checker.check_model(result, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise AttnDeployError(f"the fused model does not validate ({first_line(e)}); please report this model") from None
    info = {site.name: SiteRecord.of(site).to_json() for site in attention_sites(result)}
    records = [{"pattern": pattern, **info[name]} for name, pattern in fused]
    return FuseOutcome(result, records, misses, existing)


def fuse_artifact(artifact: Artifact) -> StageResult[FuseOutcome]:
    """The fuse stage: ``artifact`` with its attention subgraphs as FusedAttention nodes (stage ``fuse``)."""
    outcome = fuse_model(artifact.proto)
    return StageResult(artifact.evolve(outcome.model, stage="fuse"), outcome)


def _export_shapes(model: onnx.ModelProto) -> tuple[list[list[Dim]], list[int]]:
    shapes = [dims_of(vi.type) or [] for vi in model.graph.input]
    dynamic = {i for dims in shapes for i, d in enumerate(dims) if not isinstance(d, int)}
    return shapes, sorted(dynamic)


def fuse_file(source: str | Path, out: str | Path, *, always_write: bool = False) -> FuseResult:
    """Fuse ``source`` into ``out`` (+ manifest ``out.json``). Nothing fused: nothing written,
    unless ``always_write``. Both files appear only if everything succeeded."""
    source, out = Path(source), Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"output {out} must end in .onnx")
    outcome = fuse_model(load_checked(source))
    if not outcome.fused and not always_write:
        return FuseResult(outcome, None, None)
    shapes, dynamic = _export_shapes(outcome.model)
    artifact = Artifact.describe(
        outcome.model,
        source=str(source),
        exporter="fuse",
        source_sha256=sha256_file(source),
        export_input_shapes=shapes,
        export_dynamic_axes=dynamic,
        stages=["fuse"],
    )
    artifact.origin = source
    onnx_path, manifest_path = artifact.save(out)
    return FuseResult(outcome, onnx_path, manifest_path)
