"""``inspect``: every attention node with its shapes, score-matrix bytes, FLOPs and what each target runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from attn_deploy.artifact.sites import AttentionSite, attention_sites
from attn_deploy.lower.choice import DEFAULT_MAX_ATTN_MEM, choose_ort
from attn_deploy.lower.trt import trt_choice
from attn_deploy.ops.contract import DOMAIN, LOWERED_DOMAIN


def implementation_of(site: AttentionSite) -> str:
    """What the node runs as it stands: ``body`` (exported function) or the lowered implementation."""
    if site.domain == DOMAIN:
        return "body"
    return site.op_type.removeprefix("FusedAttention").removesuffix("Bias").lower()


def _site_record(site: AttentionSite, max_attn_mem: int) -> dict[str, Any]:
    if site.domain == LOWERED_DOMAIN:
        ort: dict[str, Any] = {"implementation": implementation_of(site), "reason": "already lowered"}
        trt = "lowered for ONNX Runtime: lower the exported model for TensorRT"
    else:
        choice = choose_ort(site, max_attn_mem)
        ort = {"implementation": choice.implementation, "reason": choice.reason, "block_rows": choice.block_rows}
        trt = trt_choice(site)
    return {
        "name": site.name,
        "op": f"{site.domain}::{site.op_type}",
        "implementation": implementation_of(site),
        **{k: getattr(site, k) for k in ("B", "H", "Nq", "Nk", "dk", "dv", "dtype", "scale")},
        "has_bias": site.real_bias,
        "score_matrix_bytes": site.score_matrix_bytes,
        "flops": site.flops,
        "targets": {"ort": ort, "trt": trt},
    }


def inspect_model(model: onnx.ModelProto, max_attn_mem: int = DEFAULT_MAX_ATTN_MEM) -> list[dict[str, Any]]:
    """One record per FusedAttention node (exported or lowered), graph order; JSON-serialisable."""
    return [_site_record(site, max_attn_mem) for site in attention_sites(model)]


def inspect_file(path: str | Path, max_attn_mem: int = DEFAULT_MAX_ATTN_MEM) -> list[dict[str, Any]]:
    from attn_deploy.artifact.io import load_onnx

    return inspect_model(load_onnx(path), max_attn_mem)
