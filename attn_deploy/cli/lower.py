"""``attn-deploy lower`` and ``attn-deploy inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import (
    MAX_ATTN_MEM,
    json_flag,
    max_attn_mem_option,
    parse_bytes,
)


@one_line_errors
def lower(
    model: Annotated[Path, typer.Argument(help="ONNX model written by `attn-deploy export` (with FusedAttention nodes).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Lowered .onnx; OUT.json gets the manifest with each node's implementation.")],
    target: Annotated[str, typer.Option(help="Runtime to lower for: ort (ONNX Runtime).")] = defaults.LOWER_TARGET,
    max_attn_mem: Annotated[str, max_attn_mem_option("Attention working-memory budget per node, e.g. 256M or 1G; sizes query blocks and decides when the plain graph fits.")] = MAX_ATTN_MEM,
    impl: Annotated[str, typer.Option(help="auto (fastest correct per node), or force mha, blocked or plain for every node.")] = defaults.LOWER_IMPL,
    as_json: Annotated[bool, json_flag("Print the manifest as JSON on stdout.")] = False,
) -> None:
    """Rewrite each FusedAttention node to the fastest memory-bounded implementation for TARGET."""
    from attn_deploy import api
    from attn_deploy.lower.render import lowered_table

    result = api.lower_file(model, output, target=target, max_attn_mem=parse_bytes(max_attn_mem), impl=impl)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    out.print(lowered_table(model.name, target, result.choices))
    err.print(f"wrote {result.onnx_path} and {result.manifest_path}")


@one_line_errors
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model, exported or lowered.")],
    max_attn_mem: Annotated[str, max_attn_mem_option("Budget assumed for the ORT choice (as for `lower`).")] = MAX_ATTN_MEM,
    as_json: Annotated[bool, json_flag("Print the records as JSON on stdout.")] = False,
) -> None:
    """List every FusedAttention node: shapes, score-matrix bytes, FLOPs and what each target would run."""
    from attn_deploy import api
    from attn_deploy.lower.render import inspect_table

    records = api.inspect(model, max_attn_mem=parse_bytes(max_attn_mem))
    if as_json:
        print(json.dumps(records, indent=2))
        return
    out.print(inspect_table(model.name, records))
