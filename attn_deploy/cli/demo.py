"""``attn-deploy demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors


@one_line_errors
def demo(
    model: Annotated[str, typer.Option(help="Model to demonstrate.")] = defaults.DEMO_MODEL,
    out_dir: Annotated[Path, typer.Option(help="Where the exported model goes.")] = Path(defaults.DEMO_OUT_DIR),
    iterations: Annotated[int, typer.Option(min=1, help="Timed runs per backend (at least).")] = defaults.DEMO_ITERATIONS,
    min_seconds: Annotated[float, typer.Option(min=0.0, help="Seconds of timed runs per backend (at least).")] = defaults.DEMO_MIN_SECONDS,
) -> None:
    """Export a zoo model, then print the parity (check) and latency (bench) tables for PyTorch and ONNX Runtime."""
    from attn_deploy import api
    from attn_deploy.bench.report import render_table as bench_table
    from attn_deploy.check.report import render_table as check_table

    with err.status(f"exporting {model} ...") as status:
        result = api.demo(model, out_dir, iterations=iterations, min_seconds=min_seconds, progress=lambda msg: status.update(msg + " ..."))
    err.print(f"exported {result.export.onnx_path} ({result.export.fused_attention_count} FusedAttention)")
    out.print(check_table(result.check))
    out.print(bench_table(result.bench))
    out.print("[green]PASS[/green]: ONNX Runtime matches PyTorch" if result.passed else "[red]FAIL[/red]: ONNX Runtime does not match PyTorch")
    if not result.passed:
        raise typer.Exit(1)
