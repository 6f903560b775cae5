"""ONNX Runtime runner on Polygraphy's ``OnnxrtRunner`` (CPU; CUDA first when onnxruntime-gpu sees a GPU)."""

from __future__ import annotations

from pathlib import Path

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.errors import InputError, first_line
from attn_deploy.runtime.base import Feeds, PolygraphyRunner

#: Protobuf cannot serialize a model of 2 GiB or more: such an artifact's session is built from its file.
PROTOBUF_LIMIT = 2**31 - 1


def quiet_polygraphy() -> None:
    """Polygraphy logs every comparison at INFO on stdout; keep only its errors, and send them to
    stderr through Python logging: stdout carries only what a command was asked to print (``--json``)."""
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR
    G_LOGGER.use_python_logging_system = True
    G_LOGGER.colors = False  # asking for colours prints a warning about the `colored` module on stdout


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def session_model(model: Artifact | str | Path) -> bytes | str:
    """What ``InferenceSession`` gets: the Artifact's bytes (no second parse of its file), or a path.

    A path is used for a path, and for an Artifact loaded from a file too large to serialize
    (a model with external data over protobuf's 2 GiB limit).
    """
    if not isinstance(model, Artifact):
        return str(model)
    if model.path is not None and model.proto.ByteSize() >= PROTOBUF_LIMIT:
        return str(model.path)
    data: bytes = model.proto.SerializeToString()
    return data


class OrtRunner(PolygraphyRunner):
    """An InferenceSession over an Artifact (or an .onnx file); FusedAttention runs as its inlined function body."""

    name = "ort"

    def __init__(
        self, model: Artifact | str | Path, providers: list[str] | None = None, threads: int | None = None, spinning: bool = True
    ) -> None:
        """``spinning=False`` stops idle worker threads from spinning after a run (ONNX Runtime's
        default is to spin: faster for back-to-back runs, but it takes CPU from anything else)."""
        self.model = model
        self.where = str(model.path or model.name) if isinstance(model, Artifact) else str(model)
        self.providers = providers
        self.threads = threads
        self.spinning = spinning
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    def _activate(self) -> None:
        quiet_polygraphy()
        import onnxruntime as ort
        from polygraphy.backend.onnxrt import OnnxrtRunner

        self.providers = self.providers or default_providers()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            # Polygraphy's SessionFromOnnx takes no SessionOptions, so the session is built here.
            session = ort.InferenceSession(session_model(self.model), options, providers=self.providers)
            runner = OnnxrtRunner(session)
            runner.activate()
        except Exception as e:  # noqa: BLE001 - ORT and Polygraphy raise their own types
            raise InputError(f"ONNX Runtime cannot load {self.where}: {first_line(e)}") from None
        self._runner = runner
        self._inputs = [i.name for i in runner.sess.get_inputs()]
        self._outputs = [o.name for o in runner.sess.get_outputs()]

    def infer(self, feeds: Feeds) -> Feeds:
        return self._infer(feeds)

    def __del__(self) -> None:
        # Polygraphy warns on stdout when an active runner is collected; a script reading --json would choke.
        self.close()
