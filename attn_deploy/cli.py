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


# --- lower ---
def _parse_bytes(text: str) -> int:
    units = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
    t = text.strip().upper()
    number = t.rstrip("KMGB")
    try:
        value = float(number) * units[t[len(number):]]
    except (ValueError, KeyError):
        raise typer.BadParameter(f"{text!r} is not a size like 256M, 1G or 1048576") from None
    if value <= 0:
        raise typer.BadParameter(f"{text!r}: the size must be positive")
    return int(value)


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f}"


@app.command()
@_one_line_errors
def lower(
    model: Annotated[Path, typer.Argument(help="ONNX model written by `attn-deploy export` (with FusedAttention nodes).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Lowered .onnx; OUT.json gets the manifest with each node's implementation.")],
    target: Annotated[str, typer.Option(help="Runtime to lower for: ort (ONNX Runtime).")] = "ort",
    max_attn_mem: Annotated[str, typer.Option("--max-attn-mem", help="Attention working-memory budget per node, e.g. 256M or 1G; sizes query blocks and decides when the plain graph fits.")] = "256M",
    impl: Annotated[str, typer.Option(help="auto (fastest correct per node), or force mha, blocked or plain for every node.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on stdout.")] = False,
) -> None:
    """Rewrite each FusedAttention node to the fastest memory-bounded implementation for TARGET."""
    from attn_deploy.lower import lower_file

    result = lower_file(model, output, target=target, max_attn_mem=_parse_bytes(max_attn_mem), prefer=impl)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    table = Table(title=f"{model.name} lowered for {target}")
    for col in ("node", "implementation", "block rows", "why"):
        table.add_column(col)
    for c in result.choices:
        table.add_row(c.node, c.op_type, "-" if c.block_rows is None else str(c.block_rows), c.reason)
    out.print(table)
    err.print(f"wrote {result.onnx_path} and {result.manifest_path}")


# --- inspect ---
@app.command("inspect")
@_one_line_errors
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model, exported or lowered.")],
    max_attn_mem: Annotated[str, typer.Option("--max-attn-mem", help="Budget assumed for the ORT choice (as for `lower`).")] = "256M",
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON on stdout.")] = False,
) -> None:
    """List every FusedAttention node: shapes, score-matrix bytes, FLOPs and what each target would run."""
    from attn_deploy.lower import inspect_file

    records = inspect_file(model, _parse_bytes(max_attn_mem))
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title=f"{model.name}: {len(records)} attention node(s); trt: plugin if loaded, else the shown fallback")
    for col in ("node", "runs now", "B,H,Nq,Nk,dk,dv", "dtype", "bias", "scores MiB", "GFLOP", "ort", "trt"):
        table.add_column(col, justify="right" if col in ("scores MiB", "GFLOP") else "left", overflow="fold")
    for r in records:
        gflop = "?" if r["flops"] is None else f"{r['flops'] / 1e9:,.2f}"
        trt = r["targets"]["trt"].removeprefix("plugin if loaded, else ")
        table.add_row(
            r["name"], r["implementation"], ",".join(str(r[k]) for k in ("B", "H", "Nq", "Nk", "dk", "dv")),
            str(r["dtype"]), "yes" if r["has_bias"] else "no", _mib(r["score_matrix_bytes"]), gflop,
            r["targets"]["ort"]["implementation"], trt,
        )
    out.print(table)


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
