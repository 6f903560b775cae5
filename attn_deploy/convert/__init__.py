"""Precision conversion of ONNX models (float32 -> float16 with overflow-prone ops kept in float32)."""

from attn_deploy.convert.fp16 import KEEP_FP32, Fp16Summary, convert_to_fp16

__all__ = ["KEEP_FP32", "Fp16Summary", "convert_to_fp16"]
