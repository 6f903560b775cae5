"""Defaults every entry point shares (library, API and CLI read them from here, once)."""

from __future__ import annotations

#: ONNX opset of exports: accepted by ONNX Runtime 1.2x/1.3x and TensorRT 10.x, and the dynamo
#: exporter's native opset, so no version conversion (which would inline our function) happens.
OPSET = 18
#: Oldest opset ``export`` accepts.
MIN_OPSET = 17
#: Attention working-memory budget per node when lowering (bytes).
MAX_ATTN_MEM = 256 << 20
#: ``check``/``bench`` backends, in reference-first order.
BACKENDS: tuple[str, ...] = ("torch", "ort", "trt")
