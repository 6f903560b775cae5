"""What ``attn-deploy export`` shows on stderr: the exporters' notes and what was written."""

from __future__ import annotations

from rich.markup import escape

from attn_deploy.export.exporter import ExportResult


def note_lines(result: ExportResult) -> list[str]:
    """One line (rich markup) per exporter note, e.g. dynamo failed and TorchScript was used."""
    return [f"[yellow]note:[/yellow] {escape(note)}" for note in result.notes]


def written_line(result: ExportResult) -> str:
    return (
        f"wrote {result.onnx_path} ({result.exporter} exporter, opset {result.manifest['opset']}, "
        f"{result.fused_attention_count} FusedAttention) and {result.manifest_path}"
    )
