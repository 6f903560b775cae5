"""What ``attn-deploy build-trt`` shows: the FusedAttention lowering table, its messages, its JSON."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from attn_deploy.engine.build import BuildResult


def to_json(result: BuildResult) -> dict[str, Any]:
    """The build report with the network layers cut down to their summary."""
    report = result.report
    return {k: v for k, v in report.items() if k != "network_layers"} | {"network_layers": report["network_layers"]["summary"]}


def lowering_table(result: BuildResult) -> Table:
    """One row per FusedAttention node: what TensorRT runs for it (plugin, native, body) and why."""
    report = result.report
    table = Table(title=f"FusedAttention lowering ({report['runtime']} {report['versions'][report['runtime']]}, {report['precision']})")
    for col in ("node", "choice", "blocks", "dk", "dv", "dtype", "why"):
        table.add_column(col)
    for p in result.lowering:
        choice = f"{p['choice']} (fallback)" if p.get("fell_back_from") else p["choice"]
        table.add_row(p["node"], choice, str(p["query_blocks"]), str(p["dk"]), str(p["dv"]), p["dtype"], p["reason"])
    return table


def written_line(result: BuildResult) -> str:
    report = result.report
    return (
        f"wrote {result.engine_path} ({report['engine_bytes'] / 2**20:.1f} MiB, built in {report['build_seconds']:.2f} s)"
        f" and {result.report_path}"
    )


def note_lines(result: BuildResult) -> list[str]:
    """The build's notes (rich markup), the engine-layers note last."""
    report = result.report
    return [f"[yellow]note:[/yellow] {note}" for note in [*report["notes"], report["engine_layers_note"]] if note]
