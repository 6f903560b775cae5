"""TensorRT / TensorRT-RTX engine runner (needs an NVIDIA GPU), on Polygraphy's ``TrtRunner``.

Same interface as ``OrtRunner``. The runtime flavour and plugin libraries default to what the
engine's build report (``ENGINE.json``) records. ``infer`` copies outputs to the host, which
synchronises the stream, so ``time_runner`` measures device time plus transfers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attn_deploy.engine.backend import select_backend
from attn_deploy.engine.plugins import load_plugins
from attn_deploy.engine.profiles import InputProfile, describe, outside_profile
from attn_deploy.errors import AttnDeployError, InputError
from attn_deploy.runtime.base import Feeds
from attn_deploy.runtime.gpu import require_gpu


def _report(engine_path: Path) -> dict[str, Any]:
    path = engine_path.with_name(engine_path.name + ".json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


class TrtRunner:
    """Runs a serialized engine with its first optimisation profile."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, *, runtime: str | None = None, plugins: Sequence[str | Path] | None = None) -> None:
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise InputError(f"{engine_path}: no such engine; build one with `attn-deploy build-trt`")
        require_gpu(str(engine_path))
        report = _report(engine_path)
        backend = select_backend(runtime or report.get("runtime", "auto"))
        self.name = backend.name
        load_plugins(backend, plugins if plugins is not None else report.get("plugins", {}).get("libraries", []))

        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.backend.trt import TrtRunner as PolygraphyTrtRunner

        engine = EngineFromBytes(engine_path.read_bytes())()
        if engine is None:
            raise AttnDeployError(
                f"{engine_path} does not deserialize with {backend.name} {backend.version} on this GPU "
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

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def infer(self, feeds: Feeds) -> Feeds:
        for name in self._inputs:
            if name not in feeds:
                raise InputError(f"missing input {name!r}; the engine takes {', '.join(self._inputs)}")
            shape = tuple(feeds[name].shape)
            if outside_profile(self.profile[name], shape):
                raise InputError(
                    f"input {name!r} of shape {'x'.join(map(str, shape))} is outside the engine's profile "
                    f"({describe(self.profile[name])}); rebuild with --min-shapes/--opt-shapes/--max-shapes {name}:SHAPE"
                )
        outputs = self._runner.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()}, copy_outputs_to_host=True)
        return {name: np.asarray(outputs[name]) for name in self._outputs}

    def close(self) -> None:
        self._runner.deactivate()
