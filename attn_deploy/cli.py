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
    no_fuse: Annotated[bool, typer.Option("--no-fuse", help="Export attention as plain MatMul/Softmax/MatMul, without the FusedAttention op (what `fuse` reads).")] = False,
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
        result = export_model(loaded, target, ExportOptions(shapes, _parse_axes(dynamic), opset, exporter, no_fuse))  # type: ignore[arg-type]
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


# --- fuse ---
def _bytes(n: int | None) -> str:
    if n is None:
        return "dynamic"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@app.command()
@_one_line_errors
def fuse(
    model: Annotated[Path, typer.Argument(help="An ONNX model exported without attn-deploy (plain MatMul/Softmax/MatMul, Attention or MultiHeadAttention).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx; OUT.json gets the manifest.")],
    always_write: Annotated[bool, typer.Option("--always-write", help="Write OUT even when no attention was found.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list every Softmax/attention op left alone, and why.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print fused nodes and near misses as JSON on stdout.")] = False,
) -> None:
    """Find attention subgraphs in an ONNX model and replace each with one FusedAttention node."""
    from attn_deploy.fuse import fuse_file

    with err.status(f"fusing {model} ..."):
        result = fuse_file(model, output, always_write=always_write)
    outcome = result.outcome
    if as_json:
        print(json.dumps({
            "output": str(result.output_path) if result.written else None,
            "manifest": str(result.manifest_path) if result.written else None,
            "fused": outcome.fused, "near_misses": outcome.near_misses, "existing": outcome.existing,
        }, indent=2))
    elif outcome.fused:
        table = Table(title=f"{model}: attention fused")
        table.add_column("node", no_wrap=True)
        table.add_column("pattern", ratio=1)
        for col in ("B×H×Nq×Nk", "dk/dv", "scale", "scores"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in outcome.fused:
            shape = "×".join(str(r[d]) for d in ("B", "H", "Nq", "Nk"))
            table.add_row(r["name"], r["pattern"], shape, f"{r['dk']}/{r['dv']}", f"{r['scale']:.4g}", _bytes(r["score_matrix_bytes"]))
        out.print(table)
    if verbose and not as_json:
        for miss in outcome.near_misses:
            err.print(f"[yellow]left alone:[/yellow] {miss['op_type']} {miss['node']!r}: {miss['reason']}", highlight=False, soft_wrap=True)
    if not outcome.fused:
        already = f" (it already has {outcome.existing} FusedAttention)" if outcome.existing else ""
        err.print(f"no attention found in {model}{already}" + ("" if result.written else f"; {output} not written (pass --always-write to write it anyway)")
                  + ("" if verbose or not outcome.near_misses else f"; {len(outcome.near_misses)} near miss(es), see --verbose"), highlight=False)
    if result.written:
        err.print(f"wrote {result.output_path} ({len(outcome.fused)} FusedAttention fused) and {result.manifest_path}", highlight=False)
# --- fuse ---


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
