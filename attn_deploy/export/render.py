"""What ``attn-deploy export`` shows on stderr: the exporters' notes and what was written."""

from __future__ import annotations

from rich.markup import escape

from attn_deploy.export.attention import plain_warnings
from attn_deploy.export.exporter import ExportResult


def note_lines(result: ExportResult) -> list[str]:
    """One line (rich markup) per exporter note, e.g. dynamo failed and TorchScript was used."""
    return [f"[yellow]note:[/yellow] {escape(note)}" for note in result.notes]


def warning_lines(result: ExportResult) -> list[str]:
    """One line per attention left as plain ops: the node and why it was not fused."""
    return [f"[yellow]warning:[/yellow] {escape(line)}" for line in plain_warnings(result.attention)]


def _how(result: ExportResult) -> str:
    counts = {s: sum(f.status == s for f in result.attention) for s in ("routed", "fused", "plain")}
    parts = [f"{n} {'left plain' if s == 'plain' else s}" for s, n in counts.items() if n]
    return f": {', '.join(parts)}" if parts else ""


def written_line(result: ExportResult) -> str:
    return (
        f"wrote {result.onnx_path} ({result.exporter} exporter, opset {result.manifest['opset']}, "
        f"{result.fused_attention_count} FusedAttention{_how(result)}) and {result.manifest_path}"
    )
