"""``attn-deploy fuse``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import json_flag


@one_line_errors
def fuse(
    model: Annotated[Path, typer.Argument(help="An ONNX model exported without attn-deploy (plain MatMul/Softmax/MatMul, Attention or MultiHeadAttention).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx; OUT.json gets the manifest.")],
    always_write: Annotated[bool, typer.Option("--always-write", help="Write OUT even when no attention was found.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list every Softmax/attention op left alone, and why.")] = False,
    as_json: Annotated[bool, json_flag("Print fused nodes and near misses as JSON on stdout.")] = False,
) -> None:
    """Find attention subgraphs in an ONNX model and replace each with one FusedAttention node."""
    from attn_deploy import api
    from attn_deploy.fuse.render import (
        fused_table,
        near_miss_lines,
        summary_lines,
        to_json,
    )

    with err.status(f"fusing {model} ..."):
        result = api.fuse_file(model, output, always_write=always_write)
    if as_json:
        print(json.dumps(to_json(result), indent=2))
    elif result.outcome.fused:
        out.print(fused_table(model, result))
    if verbose and not as_json:
        for line in near_miss_lines(result):
            err.print(line, highlight=False, soft_wrap=True)
    for line in summary_lines(model, output, result, verbose=verbose):
        err.print(line, highlight=False)
