"""``attn-deploy bench``: latency and memory per backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli import options as opt
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors


@one_line_errors
def bench(
    source: Annotated[str, typer.Argument(help="A PyTorch MODEL (as for export) or an .onnx file.")],
    artifacts: Annotated[list[str] | None, typer.Argument(help=".onnx files and .engine files to time beside SOURCE.")] = None,
    backends: opt.Backends = opt.BACKENDS,
    iterations: Annotated[int, typer.Option(min=1, help="At least this many timed runs per backend...")] = defaults.BENCH_ITERATIONS,
    min_seconds: Annotated[float, typer.Option(min=0.0, help="...and at least this many seconds of them.")] = defaults.BENCH_MIN_SECONDS,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = defaults.BENCH_WARMUP,
    batch: Annotated[str, typer.Option(help="Batch sizes to sweep, e.g. 1,4 (ONNX models need a dynamic batch axis).")] = ",".join(map(str, defaults.BENCH_BATCHES)),
    inputs: opt.Inputs = None,
    input_shape: opt.NamedInputShapes = None,
    seed: opt.Seed = defaults.SEED,
    val_range: opt.ValRange = None,
    data: opt.Data = None,
    allow_nonfinite: opt.AllowNonfinite = False,
    vocab: opt.Vocab = None,
    arch: opt.Arch = None,
    unsafe_load: opt.UnsafeLoad = False,
    lower: opt.LowerFirst = False,
    triton_url: opt.TritonUrl = None,
    triton_model: opt.TritonModel = None,
    report: Annotated[Path | None, opt.file_option("--report", "Write JSON: machine, versions, settings, stats and all samples.")] = None,
    markdown: Annotated[Path | None, opt.file_option("--markdown", "Write a Markdown table.")] = None,
    plot: Annotated[Path | None, opt.file_option("--plot", "Write a PNG of the latency distribution per backend.")] = None,
    as_json: Annotated[bool, opt.json_flag("Print the JSON report on stdout instead of the table.")] = False,
) -> None:
    """Latency (p50/p90/p95/p99, mean, std, CV, throughput) and peak memory per backend.

    Inputs as for check: images (a 3-channel NCHW input) uniform in [0,1], other floats N(0,1)
    (--val-range), masks ones, token ids below the embedding's size (--vocab), or --data.
    """
    from rich import progress as rp

    from attn_deploy import api
    from attn_deploy.bench.report import render_table, to_dict, write_reports
    from attn_deploy.bench.run import BenchOptions

    options = BenchOptions(
        workload=opt.workload(backends, input_shape, arch, unsafe_load, lower, inputs, data, triton_url, triton_model),
        warmup=warmup,
        iterations=iterations,
        min_seconds=min_seconds,
        batches=opt.parse_batches(batch),
        seed=seed,
        val_range=opt.parse_range(val_range),
        data=data,
        allow_nonfinite=allow_nonfinite,
        vocab=vocab,
    )
    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn())
    with rp.Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("preparing", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=min(done, total), total=total)

        result = api.bench(
            source, *(artifacts or []), options=options, progress=lambda msg: bar.update(task, description=msg, total=None), tick=tick
        )
    write_reports(result, report, markdown, plot)
    if as_json:
        print(json.dumps(to_dict(result), indent=2))
    else:
        out.print(render_table(result))
