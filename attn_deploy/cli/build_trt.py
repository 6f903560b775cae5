"""``attn-deploy build-trt``: a TensorRT / TensorRT-RTX engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import json_flag
from attn_deploy.shapes import parse_named_shapes


@one_line_errors
def build_trt(
    model: Annotated[Path, typer.Argument(help="Exported .onnx (its OUT.json manifest, if beside it, gives default profiles).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Engine file (default: MODEL.engine). MODEL.engine.json gets the report.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Convert to float16 first (softmax, reductions, normalisation stay float32).")] = False,
    fp16_io: Annotated[bool, typer.Option("--fp16-io", help="With --fp16, make model inputs and outputs float16 too (default: float32).")] = False,
    shapes: Annotated[list[str] | None, typer.Option("--shapes", help="Fixed input shape NAME:1x3x224x224 (repeatable).")] = None,
    min_shapes: Annotated[list[str] | None, typer.Option("--min-shapes", help="Profile minimum NAME:SHAPE (repeatable).")] = None,
    opt_shapes: Annotated[list[str] | None, typer.Option("--opt-shapes", help="Profile optimum NAME:SHAPE (repeatable).")] = None,
    max_shapes: Annotated[list[str] | None, typer.Option("--max-shapes", help="Profile maximum NAME:SHAPE (repeatable).")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="auto (TensorRT if importable, else TensorRT-RTX), tensorrt or tensorrt-rtx.")] = defaults.TRT_RUNTIME,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="Timing cache file to read and update (TensorRT; a no-op in TensorRT-RTX).")] = None,
    workspace: Annotated[int | None, typer.Option("--workspace", min=1, help="Workspace memory limit in MiB.")] = None,
    plugin: Annotated[list[Path] | None, typer.Option("--plugin", help="Plugin library .so to load (repeatable); FusedAttention then uses its plugin.")] = None,
    compute_capability: Annotated[list[str] | None, typer.Option("--compute-capability", help="TensorRT-RTX ahead-of-time target like 8.6 (repeatable).")] = None,
    save_onnx: Annotated[Path | None, typer.Option("--save-onnx", help="Also write the lowered ONNX model that was parsed.")] = None,
    debug_attention: Annotated[bool, typer.Option("--debug-attention", help="Keep each attention's output as an engine output "
                                                   "(only those), for check --per-attention.")] = False,
    as_json: Annotated[bool, json_flag("Print the build report as JSON on stdout.")] = False,
) -> None:
    """Build a TensorRT / TensorRT-RTX engine (no GPU needed with TensorRT-RTX) and MODEL.engine.json."""
    from attn_deploy import api
    from attn_deploy.engine import BuildOptions
    from attn_deploy.engine.render import (
        lowering_table,
        note_lines,
        to_json,
        written_line,
    )

    options = BuildOptions(
        runtime=runtime,
        fp16=fp16,
        keep_io_fp32=not fp16_io,
        shapes=parse_named_shapes(shapes or [], "--shapes"),
        min_shapes=parse_named_shapes(min_shapes or [], "--min-shapes"),
        opt_shapes=parse_named_shapes(opt_shapes or [], "--opt-shapes"),
        max_shapes=parse_named_shapes(max_shapes or [], "--max-shapes"),
        timing_cache=timing_cache,
        workspace_mib=workspace,
        plugins=tuple(plugin or []),
        compute_capabilities=tuple(compute_capability or []),
        save_onnx=save_onnx,
        debug_attention=debug_attention,
    )
    target = output or api.engine_output(model)
    with err.status(f"building {target} from {model} ..."):
        result = api.build_engine(model, target, options)
    if as_json:
        print(json.dumps(to_json(result), indent=2))
        return
    out.print(lowering_table(result))
    err.print(written_line(result), highlight=False)
    for line in note_lines(result):
        err.print(line, highlight=False)
