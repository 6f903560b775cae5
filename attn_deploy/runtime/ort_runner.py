"""ONNX Runtime runner on Polygraphy's ``OnnxrtRunner`` (CPU; CUDA first when onnxruntime-gpu sees a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_deploy.errors import InputError
from attn_deploy.runtime.base import Feeds


def quiet_polygraphy() -> None:
    """Polygraphy logs every comparison at INFO on stdout; keep only its errors."""
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OrtRunner:
    """An InferenceSession over an .onnx file; FusedAttention runs as its inlined function body."""

    name = "ort"

    def __init__(self, model_path: str | Path, providers: list[str] | None = None) -> None:
        quiet_polygraphy()
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

        self.model_path = Path(model_path)
        self.providers = providers or default_providers()
        try:
            self._runner = OnnxrtRunner(SessionFromOnnx(str(model_path), providers=self.providers))
            self._runner.activate()
        except Exception as e:  # noqa: BLE001 - ORT and Polygraphy raise their own types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"ONNX Runtime cannot load {model_path}: {first}") from None
        session = self._runner.sess
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return self._inputs

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def infer(self, feeds: Feeds) -> Feeds:
        outputs = self._runner.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return {name: np.asarray(outputs[name]) for name in self._outputs}

    def close(self) -> None:
        if self._runner.is_active:
            self._runner.deactivate()
