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

    def __init__(self, model_path: str | Path, providers: list[str] | None = None, threads: int | None = None, spinning: bool = True) -> None:
        """``spinning=False`` stops idle worker threads from spinning after a run (ONNX Runtime's
        default is to spin: faster for back-to-back runs, but it takes CPU from anything else)."""
        quiet_polygraphy()
        import onnxruntime as ort
        from polygraphy.backend.onnxrt import OnnxrtRunner

        self.model_path = Path(model_path)
        self.providers = providers or default_providers()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            # Polygraphy's SessionFromOnnx takes no SessionOptions, so the session is built here.
            session = ort.InferenceSession(str(model_path), options, providers=self.providers)
            self._runner = OnnxrtRunner(session)
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
        runner = getattr(self, "_runner", None)
        if runner is not None and runner.is_active:
            runner.deactivate()

    def __del__(self) -> None:
        # Polygraphy warns on stdout when an active runner is collected; a script reading --json would choke.
        self.close()
