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
    submodule: Annotated[str | None, typer.Option("--submodule", help="Export only this named part, e.g. backbone of a zoo detector (dotted path).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on stdout.")] = False,
) -> None:
    """Export MODEL to ONNX with one attn_deploy::FusedAttention node per attention block."""
    from attn_deploy.errors import InputError
    from attn_deploy.export import ExportOptions, export_model
    from attn_deploy.export.loading import load_model

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise InputError(f"--exporter must be auto, dynamo or torchscript, not {exporter!r}")
    shapes = tuple(_parse_shape(s) for s in input_shape or [])
    stem = Path(model.split(":", 1)[-1]).stem + (f"-{submodule.replace('.', '-')}" if submodule else "")
    target = output or Path(stem + ".onnx")
    if target.suffix != ".onnx":
        raise InputError(f"output {target} must end in .onnx")
    with err.status(f"exporting {model} ..."):
        loaded = load_model(model, arch=arch, unsafe_load=unsafe_load)
        result = export_model(loaded, target, ExportOptions(shapes, _parse_axes(dynamic), opset, exporter, submodule))  # type: ignore[arg-type]
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


# --- build-trt ---
@app.command("build-trt")
@_one_line_errors
def build_trt(
    model: Annotated[Path, typer.Argument(help="Exported .onnx (its OUT.json manifest, if beside it, gives default profiles).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Engine file (default: MODEL.engine). MODEL.engine.json gets the report.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Convert to float16 first (softmax, reductions, normalisation stay float32).")] = False,
    fp16_io: Annotated[bool, typer.Option("--fp16-io", help="With --fp16, make model inputs and outputs float16 too (default: float32).")] = False,
    shapes: Annotated[list[str] | None, typer.Option("--shapes", help="Fixed input shape NAME:1x3x224x224 (repeatable).")] = None,
    min_shapes: Annotated[list[str] | None, typer.Option("--min-shapes", help="Profile minimum NAME:SHAPE (repeatable).")] = None,
    opt_shapes: Annotated[list[str] | None, typer.Option("--opt-shapes", help="Profile optimum NAME:SHAPE (repeatable).")] = None,
    max_shapes: Annotated[list[str] | None, typer.Option("--max-shapes", help="Profile maximum NAME:SHAPE (repeatable).")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="auto (TensorRT if importable, else TensorRT-RTX), tensorrt or tensorrt-rtx.")] = "auto",
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="Timing cache file to read and update (TensorRT; a no-op in TensorRT-RTX).")] = None,
    workspace: Annotated[int | None, typer.Option("--workspace", min=1, help="Workspace memory limit in MiB.")] = None,
    plugin: Annotated[list[Path] | None, typer.Option("--plugin", help="Plugin library .so to load (repeatable); FusedAttention then uses its plugin.")] = None,
    compute_capability: Annotated[list[str] | None, typer.Option("--compute-capability", help="TensorRT-RTX ahead-of-time target like 8.6 (repeatable).")] = None,
    save_onnx: Annotated[Path | None, typer.Option("--save-onnx", help="Also write the lowered ONNX model that was parsed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the build report as JSON on stdout.")] = False,
) -> None:
    """Build a TensorRT / TensorRT-RTX engine (no GPU needed with TensorRT-RTX) and MODEL.engine.json."""
    from attn_deploy.build import BuildOptions, build_engine
    from attn_deploy.build.profiles import parse_named_shapes

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
    )
    target = output or model.with_suffix(".engine")
    with err.status(f"building {target} from {model} ..."):
        result = build_engine(model, target, options)
    report = result.report
    if as_json:
        print(json.dumps({k: v for k, v in report.items() if k != "network_layers"} | {"network_layers": report["network_layers"]["summary"]}, indent=2))
        return
    table = Table(title=f"FusedAttention lowering ({report['runtime']} {report['versions'][report['runtime']]}, {report['precision']})")
    for col in ("node", "choice", "blocks", "dk", "dv", "dtype", "why"):
        table.add_column(col)
    for p in result.lowering:
        table.add_row(p["node"], p["choice"], str(p["query_blocks"]), str(p["dk"]), str(p["dv"]), p["dtype"], p["reason"])
    out.print(table)
    err.print(
        f"wrote {result.engine_path} ({report['engine_bytes'] / 2**20:.1f} MiB, built in {report['build_seconds']:.2f} s) and {result.report_path}",
        highlight=False,
    )
    for note in [*report["notes"], report["engine_layers_note"]]:
        if note:
            err.print(f"[yellow]note:[/yellow] {note}", highlight=False)


# --- build-trt ---


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
