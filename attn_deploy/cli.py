"""The ``attn-deploy`` command line. It parses arguments and calls one function per command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from attn_deploy.errors import AttnDeployError

app = typer.Typer(
    help="Export, check and deploy attention-augmented vision models (ONNX Runtime, TensorRT).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
zoo_app = typer.Typer(help="Built-in models (use as zoo:NAME wherever MODEL is accepted).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(fn: F) -> F:
    """Turn AttnDeployError into ``error: ...`` on stderr and its exit code (2 for input errors)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AttnDeployError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a shape like 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise typer.BadParameter(f"{text!r}: every dimension must be a positive integer")
    return dims


def _parse_axes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of axis indices, e.g. 0,2,3") from None


@app.command()
@_one_line_errors
def export(
    model: Annotated[str, typer.Argument(help="zoo:NAME, package.module:factory, TorchScript .pt, torch.export .pt2, or a torch.save file.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output .onnx (default: NAME.onnx here). OUT.json gets the manifest.")] = None,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="Input shape like 1x3x800x1333; repeat for several inputs. Default: the zoo entry's.")] = None,
    dynamic: Annotated[str, typer.Option("--dynamic", help="Axes to make dynamic on every input, e.g. 0 (batch) or 2,3 (height, width).")] = "",
    opset: Annotated[int, typer.Option(help="ONNX opset (ir_version is always 10).")] = 18,
    exporter: Annotated[str, typer.Option(help="auto (dynamo, TorchScript if that fails), dynamo or torchscript.")] = "auto",
    arch: Annotated[str | None, typer.Option(help="zoo:NAME whose architecture a state-dict file fits.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow unpickling a whole saved module (runs arbitrary code: trusted files only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on stdout.")] = False,
) -> None:
    """Export MODEL to ONNX with one attn_deploy::FusedAttention node per attention block."""
    from attn_deploy.errors import InputError
    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import load_model

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise InputError(f"--exporter must be auto, dynamo or torchscript, not {exporter!r}")
    shapes = tuple(_parse_shape(s) for s in input_shape or [])
    target = output or Path(Path(model.split(":", 1)[-1]).stem + ".onnx")
    if target.suffix != ".onnx":
        raise InputError(f"output {target} must end in .onnx")
    with err.status(f"exporting {model} ..."):
        loaded = load_model(model, arch=arch, unsafe_load=unsafe_load)
        result = export_model(loaded, target, ExportOptions(shapes, _parse_axes(dynamic), opset, exporter))  # type: ignore[arg-type]
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    err.print(
        f"wrote {result.onnx_path} ({result.exporter} exporter, opset {result.manifest['opset']}, "
        f"{result.fused_attention_count} FusedAttention) and {result.manifest_path}"
    )


@app.command()
@_one_line_errors
def demo(
    model: Annotated[str, typer.Option(help="Model to demonstrate.")] = "zoo:sagan-256",
    out_dir: Annotated[Path, typer.Option(help="Where the exported model goes.")] = Path("build/demo"),
    iterations: Annotated[int, typer.Option(min=1, help="Timed runs per backend.")] = 5,
) -> None:
    """Export a zoo model, run it in PyTorch and ONNX Runtime, and print parity and latency."""
    from attn_deploy.demo import FP32_REL_TO_MAX, run_demo

    with err.status(f"exporting and running {model} ..."):
        result = run_demo(model, out_dir, iterations)
    table = Table(title=f"{model}: PyTorch vs ONNX Runtime (fp32, CPU)")
    for col in ("output", "shape", "max abs err", "max abs / max|ref|", "max rel err", "cosine"):
        table.add_column(col, justify="right" if col != "output" else "left")
    for s in result.stats:
        table.add_row(s.name, "x".join(map(str, s.shape_ref)), f"{s.max_abs:.3g}", f"{s.rel_to_max:.3g}", f"{s.max_rel:.3g}", f"{s.cosine:.8f}")
    out.print(table)
    timing = Table(title="latency (median)")
    timing.add_column("backend")
    timing.add_column("ms", justify="right")
    timing.add_row("PyTorch eager", f"{result.torch_ms:.1f}")
    timing.add_row("ONNX Runtime", f"{result.ort_ms:.1f}")
    out.print(timing)
    verdict = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
    out.print(f"{verdict}: max abs error <= {FP32_REL_TO_MAX:g} x max |output|; model at {result.export.onnx_path}")
    if not result.passed:
        raise typer.Exit(1)


# --- quantize ---
@app.command()
@_one_line_errors
def quantize(
    model: Annotated[str, typer.Argument(help="An .onnx file, or any MODEL that `export` accepts (exported first).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output int8 .onnx file.")],
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="One weight scale per output channel (default) or one per tensor.")] = True,
    weight_type: Annotated[str, typer.Option(help="Weight type: int8 or uint8 (activations are uint8, quantized at run time).")] = "int8",
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Keep nodes float whose name or op type matches this glob; repeatable.")] = None,
    include_convs: Annotated[bool, typer.Option("--include-convs", help="Also quantize the remaining Conv nodes (ConvInteger: often slower than fp32 on CPU).")] = False,
    float_qk: Annotated[bool, typer.Option("--float-qk", help="Keep the projections feeding attention's Q and K float: more exact (softmax amplifies their error), slower.")] = False,
    quantize_attention: Annotated[bool, typer.Option("--quantize-attention", help="Also run FusedAttention's softmax x V product in int8 (a different function body; less exact for long rows).")] = False,
    torch_out: Annotated[bool, typer.Option("--torch", help="Also write OUT.torch.pt: PyTorch dynamic int8 (1x1 convs as Linear) for PyTorch CPU inference; it cannot be exported to ONNX.")] = False,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="For a MODEL that is not .onnx: input shape like 1x3x800x1333 (repeat per input), as for export.")] = None,
    arch: Annotated[str | None, typer.Option(help="For a state-dict MODEL: the zoo:NAME it fits, as for export.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow unpickling a whole saved module (trusted files only), as for export.")] = False,
    iterations: Annotated[int, typer.Option(min=0, help="Timed runs per model for the latency comparison; 0 skips parity and latency.")] = 5,
    report_file: Annotated[Path | None, typer.Option("--report", help="Write the report as JSON to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Dynamic int8: 1x1 Conv projections into one MatMul, then quantize_dynamic; parity and latency report."""
    from attn_deploy.errors import InputError
    from attn_deploy.quantize import QuantizeOptions, quantize_model, write_report

    if weight_type not in ("int8", "uint8"):
        raise InputError(f"--weight-type must be int8 or uint8, not {weight_type!r}")
    options = QuantizeOptions(
        per_channel=per_channel,
        weight_type=weight_type,  # type: ignore[arg-type]
        exclude=tuple(exclude or ()),
        include_convs=include_convs,
        quantize_attention=quantize_attention,
        float_qk=float_qk,
        torch_output=output.with_suffix(".torch.pt") if torch_out else None,
        iterations=iterations,
        arch=arch,
        unsafe_load=unsafe_load,
        input_shapes=tuple(_parse_shape(s) for s in input_shape or []),
    )
    with err.status(f"quantizing {model} ..."):
        result = quantize_model(model, output, options)
    report = result.report
    if report_file is not None:
        write_report(report, report_file)
    for note in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {note}", highlight=False)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    sizes = report["size_bytes"]
    table = Table(title=f"{model} -> {output}")
    table.add_column("")
    table.add_column("float", justify="right")
    table.add_column("int8", justify="right")
    table.add_row("size (MB)", f"{sizes['float'] / 1e6:.2f}", f"{sizes['int8'] / 1e6:.2f}")
    if report.get("latency"):
        lat = report["latency"]
        table.add_row("latency (ms, median)", f"{lat['float_ms']:.1f}", f"{lat['int8_ms']:.1f} ({lat['speedup']:.2f}x)")
    out.print(table)
    nodes = report["nodes"]
    out.print(f"quantized {len(nodes['quantized'])} node(s): {', '.join(nodes['quantized']) or '-'}", highlight=False)
    reasons: dict[str, int] = {}
    for s in nodes["skipped"]:
        reasons[s["why"]] = reasons.get(s["why"], 0) + 1
    for why, count in reasons.items():
        out.print(f"kept float: {count} x {why}", highlight=False)
    if report.get("parity"):
        for s in report["parity"]:
            out.print(f"parity {s['name']}: cosine {s['cosine']:.6f}, max abs {s['max_abs']:.3g} (max |ref| ratio {s['rel_to_max']:.3g})", highlight=False)
    if report.get("detection"):
        d = report["detection"]
        out.print(f"detections matched at IoU >= {d['iou_threshold']}: {d['matched']}/{d['reference_detections']} ({d['matched_fraction']:.3f})", highlight=False)
# --- quantize ---


@zoo_app.command("list")
def zoo_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the built-in models with their default input shapes."""
    from attn_deploy.zoo import list_entries

    entries = list_entries()
    if as_json:
        print(json.dumps([
            {"name": e.name, "description": e.description, "input_shapes": e.input_shapes, "attention_blocks": e.attention_blocks}
            for e in entries
        ], indent=2))
        return
    table = Table(title="attn-deploy zoo")
    for col in ("name", "input", "blocks", "description"):
        table.add_column(col)
    for e in entries:
        table.add_row(f"zoo:{e.name}", ", ".join("x".join(map(str, s)) for s in e.input_shapes), str(e.attention_blocks), e.description)
    out.print(table)


def main() -> None:
    app(prog_name="attn-deploy")


if __name__ == "__main__":
    main()
