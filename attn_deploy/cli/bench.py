"""``attn-deploy bench``: latency and memory per backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import (
    BACKENDS,
    Arch,
    Backends,
    LowerFirst,
    NamedInputShapes,
    Seed,
    UnsafeLoad,
    file_option,
    json_flag,
    parse_batches,
    workload,
)


@one_line_errors
def bench(
    source: Annotated[str, typer.Argument(help="A PyTorch MODEL (as for export) or an .onnx file.")],
    artifacts: Annotated[list[str] | None, typer.Argument(help=".onnx files and .engine files to time beside SOURCE.")] = None,
    backends: Backends = BACKENDS,
    iterations: Annotated[int, typer.Option(min=1, help="At least this many timed runs per backend...")] = defaults.BENCH_ITERATIONS,
    min_seconds: Annotated[float, typer.Option(min=0.0, help="...and at least this many seconds of them.")] = defaults.BENCH_MIN_SECONDS,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = defaults.BENCH_WARMUP,
    batch: Annotated[str, typer.Option(help="Batch sizes to sweep, e.g. 1,4 (ONNX models need a dynamic batch axis).")] = ",".join(map(str, defaults.BENCH_BATCHES)),
    input_shape: NamedInputShapes = None,
    seed: Seed = defaults.SEED,
    report: Annotated[Path | None, file_option("--report", "Write JSON: machine, versions, settings, stats and all samples.")] = None,
    markdown: Annotated[Path | None, file_option("--markdown", "Write a Markdown table.")] = None,
    plot: Annotated[Path | None, file_option("--plot", "Write a PNG of the latency distribution per backend.")] = None,
    arch: Arch = None,
    unsafe_load: UnsafeLoad = False,
    lower: LowerFirst = False,
    as_json: Annotated[bool, json_flag("Print the JSON report on stdout instead of the table.")] = False,
) -> None:
    """Latency (p50/p90/p95/p99, mean, std, CV, throughput) and peak memory per backend."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from attn_deploy import api
    from attn_deploy.bench.report import render_table, to_dict, write_reports
    from attn_deploy.bench.run import BenchOptions

    options = BenchOptions(
        workload=workload(backends, input_shape, arch, unsafe_load, lower),
        warmup=warmup,
        iterations=iterations,
        min_seconds=min_seconds,
        batches=parse_batches(batch),
        seed=seed,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
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
