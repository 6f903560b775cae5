"""``lower_model`` / ``lower_file``: the entry points (the CLI, ``check --lower`` and ``bench --lower`` call these)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.fileio import sha256_file
from attn_deploy.artifact.io import load_artifact
from attn_deploy.artifact.manifest import Lowering
from attn_deploy.errors import InputError
from attn_deploy.lower.choice import (
    DEFAULT_MAX_ATTN_MEM,
    PREFERENCES,
    NodeChoice,
    Prefer,
)
from attn_deploy.lower.ort import lower_ort
from attn_deploy.ops.contract import LOWERED_DOMAIN

TARGETS: tuple[str, ...] = ("ort",)


def lower_model(
    model: onnx.ModelProto,
    target: str = "ort",
    max_attn_mem: int = DEFAULT_MAX_ATTN_MEM,
    prefer: Prefer = "auto",
) -> tuple[onnx.ModelProto, list[NodeChoice]]:
    """Lower every FusedAttention node of ``model`` for ``target``; the input is not modified.

    Returns the lowered model and one ``NodeChoice`` per node (graph order). ``max_attn_mem`` bounds
    the bytes of attention working memory (score blocks) per node; ``prefer`` forces one
    implementation (``mha``, ``blocked``, ``plain``) instead of the per-node ``auto`` choice.
    Every lowering computes the contract (float32 softmax) and matches the exported body within
    1e-5 relative error. Raises ``InputError`` for an unknown target or a forced impossible choice.
    """
    if target not in TARGETS:
        raise InputError(f"unknown --target {target!r}; choose one of: {', '.join(TARGETS)}")
    if prefer not in PREFERENCES:
        raise InputError(f"unknown --impl {prefer!r}; choose one of: {', '.join(PREFERENCES)}")
    return lower_ort(model, max_attn_mem, prefer)


@dataclass
class LowerResult:
    artifact: Artifact
    choices: list[NodeChoice]
    onnx_path: Path | None = None
    manifest_path: Path | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        return self.artifact.manifest.to_json()


def lower_artifact(
    artifact: Artifact,
    target: str = "ort",
    max_attn_mem: int = DEFAULT_MAX_ATTN_MEM,
    prefer: Prefer = "auto",
) -> LowerResult:
    """``artifact`` lowered for ``target``; its manifest records each site's implementation and why.

    Raises ``InputError`` when there is nothing to lower (no FusedAttention, or already lowered).
    """
    sites = artifact.sites
    where = artifact.path or artifact.manifest.source
    if not sites:
        raise InputError(f"{where} has no FusedAttention node; export it with `attn-deploy export` first")
    if all(site.domain == LOWERED_DOMAIN for site in sites):
        raise InputError(f"{where} is already lowered; lower the exported model instead")
    lowered, choices = lower_model(artifact.proto, target, max_attn_mem, prefer)
    by_node = {c.node: c for c in choices}
    records = []
    for record in artifact.manifest.fused_attention:
        choice = by_node.get(record.name)
        if choice is not None:
            record = dataclasses.replace(
                record, implementation=choice.implementation, op_type=choice.op_type, reason=choice.reason, block_rows=choice.block_rows
            )
        records.append(record)
    manifest = artifact.manifest
    result = artifact.evolve(
        lowered,
        stage=f"lower:{target}",
        source=str(artifact.path) if artifact.path else manifest.source,
        source_sha256=sha256_file(artifact.path) if artifact.path else manifest.source_sha256,
        exporter=f"{manifest.exporter} + lower --target {target}",
        fused_attention=records,
        lowering=Lowering(target, max_attn_mem, prefer),
    )
    return LowerResult(result, choices)


def lower_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    target: str = "ort",
    max_attn_mem: int = DEFAULT_MAX_ATTN_MEM,
    prefer: Prefer = "auto",
) -> LowerResult:
    """Lower ``in_path`` into ``out_path`` and its manifest (``OUT.json``), both or neither."""
    src, out = Path(in_path), Path(out_path)
    if out.suffix != ".onnx":
        raise InputError(f"output {out} must end in .onnx")
    source = load_artifact(src)
    if out.resolve() == src.resolve():
        raise InputError("output would overwrite the input; pass another -o path")
    result = lower_artifact(source, target, max_attn_mem, prefer)
    result.onnx_path, result.manifest_path = result.artifact.save(out)
    return result
