"""ONNX Runtime runner (CPU; CUDA first when onnxruntime-gpu sees a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from attn_deploy.errors import InputError
from attn_deploy.runtime.base import Feeds


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OrtRunner:
    """An ``InferenceSession`` over an .onnx file; FusedAttention runs as its inlined function body."""

    name = "ort"

    def __init__(self, model_path: str | Path, providers: list[str] | None = None, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers or default_providers())
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            first = str(e).strip().splitlines()[0]
            raise InputError(f"ONNX Runtime cannot load {model_path}: {first}") from None

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: Feeds) -> Feeds:
        outputs = self.session.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return dict(zip(self.output_names, outputs))
