"""``lower_model`` / ``lower_file``: the entry points (the CLI, ``check --lower`` and ``bench --lower`` call these)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from attn_deploy.errors import InputError
from attn_deploy.export.manifest import attention_nodes_info, build_manifest
from attn_deploy.fileio import atomic_path, sha256_file
from attn_deploy.lower.choice import DEFAULT_MAX_ATTN_MEM, PREFERENCES, NodeChoice, Prefer
from attn_deploy.lower.ort import lower_ort, name_attention_nodes
from attn_deploy.lower.sites import ORT_DOMAIN, attention_sites

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
    onnx_path: Path
    manifest_path: Path
    choices: list[NodeChoice]
    manifest: dict[str, Any]


def load_onnx(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise InputError(f"no such file: {path}; pass an .onnx file written by `attn-deploy export`")
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise InputError(f"{path} is not a readable ONNX model ({type(e).__name__}); re-export it") from None


def lower_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    target: str = "ort",
    max_attn_mem: int = DEFAULT_MAX_ATTN_MEM,
    prefer: Prefer = "auto",
) -> LowerResult:
    """Lower ``in_path`` into ``out_path`` and write its manifest (``OUT.json``) beside it, atomically.

    The manifest is the export manifest's format; each ``fused_attention`` record gains
    ``implementation``, ``op_type``, ``reason`` and ``block_rows``; ``lowering`` records the options.
    """
    src, out = Path(in_path), Path(out_path)
    if out.suffix != ".onnx":
        raise InputError(f"output {out} must end in .onnx")
    if out.resolve() == src.resolve():
        raise InputError("output would overwrite the input; pass another -o path")
    model = load_onnx(src)
    if not attention_sites(model):
        raise InputError(f"{src} has no FusedAttention node; export it with `attn-deploy export` first")
    if not any(n.domain != ORT_DOMAIN for n in _attention_nodes(model)):
        raise InputError(f"{src} is already lowered; lower the exported model instead")
    lowered, choices = lower_model(model, target, max_attn_mem, prefer)

    named = onnx.ModelProto()
    named.CopyFrom(model)
    name_attention_nodes(named)
    records = attention_nodes_info(named, {c.node: {k: v for k, v in c.to_json().items() if k != "node"} for c in choices})
    source_manifest = _read_manifest(src.with_suffix(".json"))
    manifest_path = out.with_suffix(".json")
    with atomic_path(out) as tmp_onnx, atomic_path(manifest_path) as tmp_json:
        onnx.save(lowered, str(tmp_onnx))
        manifest = build_manifest(
            lowered,
            source=str(src),
            source_sha256=sha256_file(src),
            output_sha256=sha256_file(tmp_onnx),
            exporter=f"{source_manifest.get('exporter', 'unknown')} + lower --target {target}",
            input_shapes=source_manifest.get("export_input_shapes", []),
            dynamic_axes=source_manifest.get("export_dynamic_axes", []),
        )
        manifest["fused_attention"] = records
        manifest["lowering"] = {"target": target, "max_attn_mem": max_attn_mem, "impl": prefer}
        tmp_json.write_text(json.dumps(manifest, indent=2) + "\n")
    return LowerResult(out, manifest_path, choices, manifest)


def _attention_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [model.graph.node[s.index] for s in attention_sites(model)]


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
