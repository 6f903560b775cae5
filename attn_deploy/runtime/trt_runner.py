"""TensorRT / TensorRT-RTX engine runner (needs an NVIDIA GPU), on Polygraphy's ``TrtRunner``.

Same interface as ``OrtRunner``. The runtime flavour and plugin libraries default to what the
engine's build report (``ENGINE.json``) records. ``infer`` copies outputs to the host, which
synchronises the stream, so a timed ``infer`` measures device time plus transfers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attn_deploy.artifact.io import engine_report_path, read_json
from attn_deploy.engine.profiles import InputProfile, describe, outside_profile
from attn_deploy.errors import AttnDeployError, InputError
from attn_deploy.runtime.base import Feeds, PolygraphyRunner
from attn_deploy.runtime.gpu import require_gpu


def build_report(engine_path: str | Path) -> dict[str, Any]:
    """The engine's build report (``ENGINE.json``), empty when there is none or it is not JSON."""
    report = read_json(engine_report_path(engine_path))
    return report if isinstance(report, dict) else {}


class TrtRunner(PolygraphyRunner):
    """Runs a serialized engine with its first optimisation profile; ``flavour`` is the TensorRT build that runs it."""

    name = "trt"

    def __init__(self, engine_path: str | Path, *, runtime: str | None = None, plugins: Sequence[str | Path] | None = None) -> None:
        """Checks the engine file and the GPU; ``activate`` deserializes the engine."""
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise InputError(f"{self.engine_path}: no such engine; build one with `attn-deploy build-trt`")
        require_gpu(str(self.engine_path))
        self.report = build_report(self.engine_path)
        self.runtime = runtime
        self.plugins = plugins
        self.flavour: str | None = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self.profile: dict[str, InputProfile] = {}

    def _activate(self) -> None:
        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.backend.trt import TrtRunner as PolygraphyTrtRunner

        from attn_deploy.engine.backend import select_backend
        from attn_deploy.engine.plugins import load_plugins

        report = self.report
        backend = select_backend(self.runtime or report.get("runtime", "auto"))
        self.flavour = backend.name
        load_plugins(backend, self.plugins if self.plugins is not None else report.get("plugins", {}).get("libraries", []))
        engine = EngineFromBytes(self.engine_path.read_bytes())()
        if engine is None:
            raise AttnDeployError(
                f"{self.engine_path} does not deserialize with {backend.name} {backend.version} on this GPU "
                f"(built by {report.get('runtime', '?')} {report.get('versions', {}).get(report.get('runtime', ''), '?')} "
                f"for compute capabilities {report.get('compute_capabilities', '?')}); rebuild it for this GPU"
            )
        trt = backend.trt
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.profile = {
            n: InputProfile(n, *(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(n, 0)))
            for n in self._inputs
        }
        self._runner = PolygraphyTrtRunner(engine)
        self._runner.activate()

    def infer(self, feeds: Feeds) -> Feeds:
        self.activate()
        for name in self._inputs:
            if name not in feeds:
                raise InputError(f"missing input {name!r}; the engine takes {', '.join(self._inputs)}")
            shape = tuple(feeds[name].shape)
            if outside_profile(self.profile[name], shape):
                raise InputError(
                    f"input {name!r} of shape {'x'.join(map(str, shape))} is outside the engine's profile "
                    f"({describe(self.profile[name])}); rebuild with --min-shapes/--opt-shapes/--max-shapes {name}:SHAPE"
                )
        return self._infer(feeds, copy_outputs_to_host=True)
