"""Dynamic int8 for attention models: projections into MatMul, ``quantize_dynamic``, attention
lowered for ONNX Runtime, a report."""

from attn_deploy.quantize.pipeline import QuantizeOptions, QuantizeResult, quantize_model, write_report

__all__ = ["QuantizeOptions", "QuantizeResult", "quantize_model", "write_report"]
