"""torch -> ONNX with ``attn_deploy::FusedAttention`` nodes, plus a manifest."""

from attn_deploy.export.exporter import (
    ExportOptions,
    ExportResult,
    export_artifact,
    export_model,
)

__all__ = ["ExportOptions", "ExportResult", "export_artifact", "export_model"]
