"""Per-target lowering of FusedAttention nodes (ONNX Runtime, TensorRT)."""
