"""Dynamic int8 for attention models: projections into MatMul, ``quantize_dynamic``, attention
lowered for ONNX Runtime.

``quantize_artifact`` is the stage (Artifact in, int8 Artifact + ``QuantizeSummary`` out). The
report with parity and latency is composed by ``attn_deploy.api.quantize`` (which passes
``attn_deploy.bench.compare.compare_int8``): this package imports neither check, bench nor runtime.
"""

from __future__ import annotations

from typing import Any

from attn_deploy.quantize.pipeline import (
    QuantizeOptions,
    QuantizeResult,
    QuantizeSummary,
    quantize_artifact,
    write_report,
)

__all__ = ["QuantizeOptions", "QuantizeResult", "QuantizeSummary", "quantize_artifact", "quantize_model", "write_report"]


def __getattr__(name: str) -> Any:
    # ``quantize_model`` with the parity/latency comparison, as the CLI imports it today; it is
    # ``attn_deploy.api.quantize_model`` (resolved on use, so importing this package loads no bench).
    if name == "quantize_model":
        from attn_deploy.api import quantize_model

        return quantize_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
