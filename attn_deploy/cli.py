"""The ``attn-deploy`` command line. It parses arguments and calls one function per command."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
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
err = Console(stderr=True, soft_wrap=True)  # messages stay one line, whatever the width
for _console in (out, err):  # CI logs are not terminals: do not squeeze tables into 80 columns
    if not _console.is_terminal:
        _console.width = max(_console.width, 120)
F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(fn: F) -> F:
    """Turn AttnDeployError into ``error: ...`` on stderr and its exit code (2 for input errors)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AttnDeployError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
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
    no_fuse: Annotated[bool, typer.Option("--no-fuse", help="Export attention as plain MatMul/Softmax/MatMul, without the FusedAttention op (what `fuse` reads).")] = False,
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
        result = export_model(loaded, target, ExportOptions(shapes, _parse_axes(dynamic), opset, exporter, no_fuse=no_fuse, submodule=submodule))  # type: ignore[arg-type]
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
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
    iterations: Annotated[int, typer.Option(min=1, help="Timed runs per backend (at least).")] = 10,
    min_seconds: Annotated[float, typer.Option(min=0.0, help="Seconds of timed runs per backend (at least).")] = 1.0,
) -> None:
    """Export a zoo model, then print the parity (check) and latency (bench) tables for PyTorch and ONNX Runtime."""
    from attn_deploy.bench.report import render_table as bench_table
    from attn_deploy.check.report import render_table as check_table
    from attn_deploy.demo import run_demo

    with err.status(f"exporting {model} ...") as status:
        result = run_demo(model, out_dir, iterations, min_seconds, progress=lambda msg: status.update(msg + " ..."))
    err.print(f"exported {result.export.onnx_path} ({result.export.fused_attention_count} FusedAttention)")
    out.print(check_table(result.check))
    out.print(bench_table(result.bench))
    out.print("[green]PASS[/green]: ONNX Runtime matches PyTorch" if result.passed else "[red]FAIL[/red]: ONNX Runtime does not match PyTorch")
    if not result.passed:
        raise typer.Exit(1)


# --- check ---
def _parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["images:1x3x224x224", "1x3x8x8"]`` -> ``{"images": ..., "": ...}``."""
    shapes = {}
    for item in values or []:
        name, _, shape = item.rpartition(":")
        shapes[name] = _parse_shape(shape)
    return shapes


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not LOW,HIGH (e.g. 0,1)") from None
    return lo, hi


@app.command()
@_one_line_errors
def check(
    source: Annotated[str, typer.Argument(help="Reference: a PyTorch MODEL (as for export) or an .onnx file.")],
    artifacts: Annotated[list[str] | None, typer.Argument(help="Candidates: .onnx files (ONNX Runtime) and .engine files (TensorRT). "
                                                                 "None with a PyTorch SOURCE: it is exported and checked in ONNX Runtime.")] = None,
    backends: Annotated[str, typer.Option(help="Backends to run, from torch,ort,trt; one that cannot run here is reported as skipped.")] = "torch,ort,trt",
    seed: Annotated[int, typer.Option(help="Seed for random inputs.")] = 0,
    val_range: Annotated[str | None, typer.Option(help="Random inputs uniform in LOW,HIGH (default: [0,1] for image models, else N(0,1)).")] = None,
    data: Annotated[Path | None, typer.Option(help="Real inputs: an .npz (arrays named like the inputs), an image, or a folder of images "
                                                   "(resized and normalised per the manifest).")] = None,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="[NAME:]1x3x224x224 for dynamic inputs; repeatable.")] = None,
    precision: Annotated[str, typer.Option(help="Tolerance preset: auto (from each artifact), fp32, fp16 or int8.")] = "auto",
    atol: Annotated[list[str] | None, typer.Option(help="Absolute tolerance, VALUE or OUTPUT=VALUE; repeatable (e.g. --atol boxes=0.5).")] = None,
    rtol: Annotated[list[str] | None, typer.Option(help="Relative tolerance, VALUE or OUTPUT=VALUE; repeatable.")] = None,
    check_error_stat: Annotated[list[str] | None, typer.Option(help="elemwise, max, mean or median, or OUTPUT=STAT: which error must be within tolerance.")] = None,
    min_cosine: Annotated[float | None, typer.Option(help="Minimum cosine similarity per output (default from the preset).")] = None,
    iou: Annotated[float, typer.Option(help="Detections: IoU at which a candidate box matches a reference box.")] = 0.5,
    min_matched: Annotated[float, typer.Option(help="Detections: minimum matched / max(reference, candidate) count.")] = 0.99,
    max_score_error: Annotated[float, typer.Option(help="Detections: maximum score difference of matched boxes.")] = 0.05,
    report: Annotated[Path | None, typer.Option(help="Write the full report as JSON.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown summary (fits a CI step summary).")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML (one testcase per output).")] = None,
    arch: Annotated[str | None, typer.Option(help="zoo:NAME for a state-dict SOURCE.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow unpickling a whole saved module (trusted files only).")] = False,
    lower: Annotated[bool, typer.Option("--lower", help="Lower each .onnx ARTIFACT for ONNX Runtime first (as `attn-deploy lower --target ort`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout instead of the table.")] = False,
) -> None:
    """Parity gate: exit 0 if every candidate matches SOURCE, 1 if one does not, 2 for usage or input errors.

    Presets (atol / rtol / error stat / min cosine), chosen per artifact by --precision auto:
    fp32 1e-4 / 1e-4 / elemwise / 0.99999; fp16 1e-2 / 1e-2 / elemwise / 0.999;
    int8 5e-2 / 5e-2 / median / 0.99. Detector outputs (boxes, scores, labels) are matched by class
    and IoU instead.
    """
    from attn_deploy.check.detection import DetectionThresholds
    from attn_deploy.check.gate import CheckOptions, run_check
    from attn_deploy.check.report import render_table, to_dict, write_reports
    from attn_deploy.check.tolerances import PRESETS, ToleranceOverrides, parse_per_output
    from attn_deploy.errors import InputError
    from attn_deploy.runtime.backends import parse_backends
    from attn_deploy.runtime.workload import WorkloadOptions, ort_lowering

    if precision != "auto" and precision not in PRESETS:
        raise InputError(f"--precision must be auto, {', '.join(PRESETS)}; not {precision!r}")
    options = CheckOptions(
        workload=WorkloadOptions(parse_backends(backends), _parse_input_shapes(input_shape), arch, unsafe_load,
                                 transform=ort_lowering() if lower else None),
        seed=seed,
        val_range=_parse_range(val_range),
        data=data,
        overrides=ToleranceOverrides(
            atol=parse_per_output(atol or [], "--atol"),  # type: ignore[arg-type]
            rtol=parse_per_output(rtol or [], "--rtol"),  # type: ignore[arg-type]
            check_error_stat=parse_per_output(check_error_stat or [], "--check-error-stat", str),  # type: ignore[arg-type]
            min_cosine=min_cosine,
        ),
        precision=precision,
        detection=DetectionThresholds(iou, min_matched, max_score_error),
    )
    with err.status("checking ...") as status:
        result = run_check(source, artifacts or [], options, progress=lambda msg: status.update(msg + " ..."))
    write_reports(result, report, markdown, junit)
    if as_json:
        print(json.dumps(to_dict(result), indent=2))
    else:
        out.print(render_table(result))
        out.print("[green]PASS[/green]" if result.passed else "[red]FAIL[/red]: a candidate does not match the reference")
    if not result.passed:
        raise typer.Exit(1)
# --- end check ---


# --- bench ---
def _parse_batches(text: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of batch sizes like 1,4") from None
    if not batches or any(b <= 0 for b in batches):
        raise typer.BadParameter(f"{text!r}: batch sizes must be positive")
    return batches


@app.command()
@_one_line_errors
def bench(
    source: Annotated[str, typer.Argument(help="A PyTorch MODEL (as for export) or an .onnx file.")],
    artifacts: Annotated[list[str] | None, typer.Argument(help=".onnx files and .engine files to time beside SOURCE.")] = None,
    backends: Annotated[str, typer.Option(help="Backends to run, from torch,ort,trt; one that cannot run here is reported as skipped.")] = "torch,ort,trt",
    iterations: Annotated[int, typer.Option(min=1, help="At least this many timed runs per backend...")] = 20,
    min_seconds: Annotated[float, typer.Option(min=0.0, help="...and at least this many seconds of them.")] = 2.0,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 3,
    batch: Annotated[str, typer.Option(help="Batch sizes to sweep, e.g. 1,4 (ONNX models need a dynamic batch axis).")] = "1",
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="[NAME:]1x3x224x224 for dynamic inputs; repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the random inputs.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write JSON: machine, versions, settings, stats and all samples.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown table.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the latency distribution per backend.")] = None,
    arch: Annotated[str | None, typer.Option(help="zoo:NAME for a state-dict SOURCE.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow unpickling a whole saved module (trusted files only).")] = False,
    lower: Annotated[bool, typer.Option("--lower", help="Lower each .onnx ARTIFACT for ONNX Runtime first (as `attn-deploy lower --target ort`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout instead of the table.")] = False,
) -> None:
    """Latency (p50/p90/p95/p99, mean, std, CV, throughput) and peak memory per backend."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from attn_deploy.bench.report import render_table, to_dict, write_reports
    from attn_deploy.bench.run import BenchOptions, run_bench
    from attn_deploy.runtime.backends import parse_backends
    from attn_deploy.runtime.workload import WorkloadOptions, ort_lowering

    options = BenchOptions(
        workload=WorkloadOptions(parse_backends(backends), _parse_input_shapes(input_shape), arch, unsafe_load,
                                 transform=ort_lowering() if lower else None),
        warmup=warmup,
        iterations=iterations,
        min_seconds=min_seconds,
        batches=_parse_batches(batch),
        seed=seed,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("preparing", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=min(done, total), total=total)

        result = run_bench(source, artifacts or [], options, progress=lambda msg: bar.update(task, description=msg, total=None), tick=tick)
    write_reports(result, report, markdown, plot)
    if as_json:
        print(json.dumps(to_dict(result), indent=2))
    else:
        out.print(render_table(result))
# --- end bench ---


# --- build-plugin ---
@app.command("build-plugin")
@_one_line_errors
def build_plugin(
    build_dir: Annotated[Path, typer.Option("--build-dir", help="CMake build folder; the libraries land here.")] = Path("build/plugin"),
    tensorrt_root: Annotated[Path | None, typer.Option("--tensorrt-root", help="TensorRT install with include/ and lib/ (default: $TENSORRT_ROOT, then /usr/local/tensorrt, /opt/tensorrt, /usr).")] = None,
    cuda_arch: Annotated[str, typer.Option("--cuda-arch", help="CMAKE_CUDA_ARCHITECTURES, e.g. 80;86;89;90 or native.")] = "80;86;89;90",
    source: Annotated[Path | None, typer.Option("--source", help="plugins/fused_attention of a checkout (default: the one beside this package).")] = None,
    build_type: Annotated[str, typer.Option("--build-type", help="CMAKE_BUILD_TYPE.")] = "Release",
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Parallel compile jobs.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the library paths as JSON on stdout.")] = False,
) -> None:
    """Build the FusedAttention TensorRT plugin (C++/CUDA) with CMake and print the library path."""
    from attn_deploy.trt_plugin.build import PluginBuildOptions, build_plugin as run_build

    options = PluginBuildOptions(build_dir, source, tensorrt_root, cuda_arch, build_type, jobs)
    with err.status("building the FusedAttention plugin ..."):
        result = run_build(options)
    if as_json:
        print(json.dumps({
            "library": str(result.library), "static_library": str(result.static_library),
            "tensorrt_root": str(result.tensorrt_root), "nvcc": str(result.nvcc),
        }, indent=2))
        return
    err.print(f"built with TensorRT at {result.tensorrt_root} and {result.nvcc}; for dlopen/Polygraphy: {result.static_library}")
    print(result.library)
# --- end build-plugin ---


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
# --- end fuse ---


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
    float_qk: Annotated[bool, typer.Option("--float-qk/--int8-qk", help="Keep the 1x1 Conv projections feeding attention's Q and K float (default): softmax amplifies their error. --int8-qk quantizes them too: faster, less exact.")] = True,
    quantize_attention: Annotated[bool, typer.Option("--quantize-attention", help="Also run FusedAttention's softmax x V product in int8 (a different function body; less exact for long rows).")] = False,
    lower: Annotated[bool, typer.Option("--lower/--no-lower", help="Lower FusedAttention for ONNX Runtime, as `lower --target ort` does (default; not with --quantize-attention). Dynamic int8 runs only in ONNX Runtime; --no-lower keeps the portable FusedAttention nodes.")] = True,
    torch_out: Annotated[bool, typer.Option("--torch", help="Also write OUT.torch.pt: PyTorch dynamic int8 (1x1 convs as Linear) for PyTorch CPU inference; it cannot be exported to ONNX.")] = False,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="For a MODEL that is not .onnx: input shape like 1x3x800x1333 (repeat per input), as for export.")] = None,
    arch: Annotated[str | None, typer.Option(help="For a state-dict MODEL: the zoo:NAME it fits, as for export.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow unpickling a whole saved module (trusted files only), as for export.")] = False,
    iterations: Annotated[int, typer.Option(min=0, help="Timed runs per model for the latency comparison; 0 skips parity and latency.")] = 5,
    report_file: Annotated[Path | None, typer.Option("--report", help="Write the report as JSON to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Dynamic int8 for ONNX Runtime: 1x1 Conv projections into MatMuls, quantize_dynamic, attention lowered; parity and latency report."""
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
        lower=lower,
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
        if "float_lowered_ms" in lat:
            table.add_row("float lowered for ORT", f"{lat['float_lowered_ms']:.1f}", f"({lat['speedup_vs_float_lowered']:.2f}x)")
    out.print(table)
    if report.get("attention_lowering"):
        picked = ", ".join(f"{c['node']}: {c['implementation']}" for c in report["attention_lowering"])
        out.print(f"attention lowered for ONNX Runtime: {picked}", highlight=False)
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
# --- end quantize ---


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
    from attn_deploy.engine import BuildOptions, build_engine
    from attn_deploy.engine.profiles import parse_named_shapes

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


# --- end build-trt ---


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
# --- end lower ---


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
# --- end inspect ---


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
