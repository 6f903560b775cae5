"""What ``attn-deploy fuse`` shows: the fused nodes as a table, its messages, its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from attn_deploy.fuse.fuser import FuseResult


def format_bytes(n: float | None) -> str:
    """``12582912`` -> ``12.0 MiB``; None (a dynamic size) -> ``dynamic``."""
    if n is None:
        return "dynamic"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def to_json(result: FuseResult) -> dict[str, Any]:
    """Output paths (None when nothing was written), fused nodes, near misses and pre-existing nodes."""
    outcome = result.outcome
    return {
        "output": str(result.output_path) if result.written else None,
        "manifest": str(result.manifest_path) if result.written else None,
        "fused": outcome.fused, "near_misses": outcome.near_misses, "existing": outcome.existing,
    }


def fused_table(model: Path, result: FuseResult) -> Table:
    """One row per fused node: pattern, B×H×Nq×Nk, dk/dv, scale and the score matrix's size."""
    table = Table(title=f"{model}: attention fused")
    table.add_column("node", no_wrap=True)
    table.add_column("pattern", ratio=1)
    for col in ("B×H×Nq×Nk", "dk/dv", "scale", "scores"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in result.outcome.fused:
        shape = "×".join(str(r[d]) for d in ("B", "H", "Nq", "Nk"))
        table.add_row(r["name"], r["pattern"], shape, f"{r['dk']}/{r['dv']}", f"{r['scale']:.4g}", format_bytes(r["score_matrix_bytes"]))
    return table


def near_miss_lines(result: FuseResult) -> list[str]:
    """For ``--verbose``: every Softmax / attention op left alone, and why (rich markup)."""
    return [f"[yellow]left alone:[/yellow] {m['op_type']} {m['node']!r}: {m['reason']}" for m in result.outcome.near_misses]


def summary_lines(model: Path, output: Path, result: FuseResult, *, verbose: bool) -> list[str]:
    """The stderr lines after the table: nothing found (and why nothing was written), what was written."""
    outcome = result.outcome
    lines = []
    if not outcome.fused:
        already = f" (it already has {outcome.existing} FusedAttention)" if outcome.existing else ""
        lines.append(
            f"no attention found in {model}{already}"
            + ("" if result.written else f"; {output} not written (pass --always-write to write it anyway)")
            + ("" if verbose or not outcome.near_misses else f"; {len(outcome.near_misses)} near miss(es), see --verbose")
        )
    if result.written:
        lines.append(f"wrote {result.output_path} ({len(outcome.fused)} FusedAttention fused) and {result.manifest_path}")
    return lines
