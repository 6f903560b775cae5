"""Writers for a BenchReport: rich table, JSON (with every sample), Markdown, and a latency plot."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from attn_deploy.bench.run import BackendResult, BenchReport
from attn_deploy.bench.timing import CV_WARN
from attn_deploy.errors import InputError
from attn_deploy.render import with_notes, write_files
from attn_deploy.runtime.backends import short_label


def to_dict(report: BenchReport) -> dict[str, Any]:
    """JSON: machine, versions, settings, skipped backends, the files measured (path, sha256, by label), and per
    (backend, batch) stats, memory and all samples.

    ``device_peak_mb`` is PyTorch's CUDA allocator peak: set for the torch backend on a CUDA device
    only, null for ort and trt (their device allocations are invisible to it).
    """
    return {
        "format": "attn-deploy-bench/1",
        "source": report.source,
        "machine": report.machine,
        "versions": report.versions,
        "settings": report.settings,
        "skipped": [{"backend": s.label, "reason": s.reason} for s in report.skipped],
        "artifacts": report.artifacts,
        "results": [
            {
                "backend": r.label,
                "kind": r.backend,
                "batch": r.batch,
                "latency_s": r.latency.to_dict(),
                "noisy": r.latency.noisy,
                "rss_before_mb": r.rss_before_mb,
                "peak_rss_mb": r.peak_rss_mb,
                "extra_rss_mb": r.extra_rss_mb,
                "device_peak_mb": r.device_peak_mb,
                "samples_s": r.samples_s,
            }
            for r in report.results
        ],
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def render_table(report: BenchReport) -> Table:
    table = Table(title=f"latency of {report.source} (ms)", title_justify="left")
    for col in ("backend", "batch", "p50", "p90", "p99", "mean", "CV", "items/s", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in report.results:
        cv = f"{r.latency.cv:.1%}" + (" [yellow]noisy[/yellow]" if r.latency.noisy else "")
        table.add_row(short_label(r.label), str(r.batch), _ms(r.latency.p50), _ms(r.latency.p90), _ms(r.latency.p99),
                      _ms(r.latency.mean), cv, f"{r.latency.throughput:.1f}", f"{r.peak_rss_mb:.0f}")
    notes = [f"skipped {s.label}: {s.reason}" for s in report.skipped] + [f"note: {n}" for n in report.notes]
    if any(r.latency.noisy for r in report.results):
        notes.append(f"noisy: coefficient of variation above {CV_WARN:.1%}; measure on a quiet machine")
    return with_notes(table, notes)


def to_markdown(report: BenchReport) -> str:
    lines = [
        f"### attn-deploy bench: `{report.source}`",
        "",
        f"{report.machine.get('cpu')} ({report.machine.get('cpu_count')} cores)"
        + (f", {report.machine['gpu']}" if report.machine.get("gpu") else ""),
        "",
        "| backend | batch | p50 ms | p90 ms | p99 ms | mean ms | CV | items/s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        lines.append(f"| `{short_label(r.label)}` | {r.batch} | {_ms(r.latency.p50)} | {_ms(r.latency.p90)} | {_ms(r.latency.p99)} | "
                     f"{_ms(r.latency.mean)} | {r.latency.cv:.1%} | {r.latency.throughput:.1f} | {r.peak_rss_mb:.0f} |")
    for s in report.skipped:
        lines.append(f"| `{s.label}` | | | | | | | | skipped: {s.reason} |")
    return "\n".join(lines) + "\n"


def plot_png(report: BenchReport) -> bytes:
    """Latency distribution per (backend, batch) as a box plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'attn-deploy[bench]'") from None
    results: list[BackendResult] = report.results
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(results)), 4))
    ax.boxplot([[s * 1e3 for s in r.samples_s] for r in results], showfliers=True)
    ax.set_xticks(range(1, len(results) + 1), [f"{short_label(r.label)}\nbatch {r.batch}" for r in results], fontsize=8)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"attn-deploy bench: {report.source}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write_reports(report: BenchReport, json_path: Path | None, markdown_path: Path | None, plot_path: Path | None) -> None:
    write_files([
        (json_path, lambda: (json.dumps(to_dict(report), indent=2) + "\n").encode()),
        (markdown_path, lambda: to_markdown(report).encode()),
        (plot_path, lambda: plot_png(report)),
    ])
