"""``attn-deploy export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli import options as opt
from attn_deploy.cli.app import err
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.shapes import InputDecl, parse_inputs, parse_shape


@one_line_errors
def export(
    model: Annotated[str, typer.Argument(help="zoo:NAME, package.module:factory (imports and calls that function: code that runs), TorchScript .pt, torch.export .pt2, or a torch.save file.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output .onnx (default: NAME.onnx here). OUT.json gets the manifest.")] = None,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="Input shape like 1x3x800x1333 (float32); repeat for several inputs. Default: the zoo entry's.")] = None,
    inputs: opt.Inputs = None,
    input_names: Annotated[str | None, typer.Option("--input-names", help="Graph input names, comma-separated (default: --input's names, else the model's).")] = None,
    output_names: Annotated[str | None, typer.Option("--output-names", help="Graph output names, comma-separated (a detector's are boxes, labels, scores by default).")] = None,
    dynamic: Annotated[str, typer.Option("--dynamic", help="Axes to make dynamic on every input, e.g. 0 (batch) or 2,3 (height, width).")] = "",
    opset: Annotated[int, typer.Option(help="ONNX opset (ir_version is always 10).")] = defaults.OPSET,
    exporter: Annotated[str, typer.Option(help="auto (dynamo, TorchScript if that fails), dynamo or torchscript.")] = defaults.EXPORTER,
    arch: opt.Arch = None,
    unsafe_load: opt.UnsafeLoad = False,
    submodule: Annotated[str | None, typer.Option("--submodule", help="Export only this named part, e.g. backbone of a zoo detector (dotted path).")] = None,
    as_json: Annotated[bool, opt.json_flag("Print the manifest as JSON on stdout.")] = False,
    no_fuse: Annotated[bool, typer.Option("--no-fuse", help="Export attention as plain MatMul/Softmax/MatMul, without the FusedAttention op (what `fuse` reads).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 2) when an attention is left as plain MatMul/Softmax/MatMul instead of warning.")] = False,
) -> None:
    """Export MODEL to ONNX with one attn_deploy::FusedAttention node per attention block."""
    from attn_deploy import api
    from attn_deploy.export.render import note_lines, warning_lines, written_line

    decls = parse_inputs(inputs or []) + [InputDecl("", parse_shape(s)) for s in input_shape or []]
    names = opt.parse_names(input_names, "--input-names") or tuple(d.name for d in decls if d.name)
    with err.status(f"exporting {model} ..."):
        result = api.export_file(
            model, output, submodule=submodule, input_shapes=tuple(d.shape for d in decls), dynamic_axes=opt.parse_axes(dynamic),
            opset=opset, exporter=exporter, fuse=not no_fuse, arch=arch, unsafe_load=unsafe_load, strict=strict,
            input_dtypes=tuple(d.dtype for d in decls), input_names=names if len(names) == len(decls) or input_names else (),
            output_names=opt.parse_names(output_names, "--output-names"),
        )
    for line in note_lines(result) + warning_lines(result):
        err.print(line, highlight=False)
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    err.print(written_line(result))
