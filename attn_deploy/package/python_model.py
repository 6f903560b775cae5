"""The Python backend's ``model.py``: ``model.onnx`` beside it, run with ONNX Runtime on the CPU.

Triton's Python stub does not inherit ``PYTHONPATH``, so the file puts the site-packages of the
interpreter that wrote it (where numpy and onnxruntime are) on ``sys.path`` before importing them.
The stub's own NumPy conversions (``as_numpy``, ``Tensor(name, array)``) were built for NumPy 1 and
read NumPy 2 arrays as empty, so tensors cross as DLPack instead. Under dynamic batching the requests Triton hands over together run as one batch when their
non-batch dims agree, and are split back per request.
"""

from __future__ import annotations

import site
import sys
import sysconfig

_TEMPLATE = '''"""Triton Python-backend model written by attn-deploy: runs model.onnx beside it with ONNX Runtime."""

import sys

# The backend's stub does not inherit PYTHONPATH: numpy and onnxruntime are found here.
for _path in reversed({paths!r}):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

_hook = sys.unraisablehook


def _quiet_capsules(unraisable):
    # The stub renames a DLPack capsule it consumed to "used_dlpack", not DLPack's "used_dltensor", so
    # NumPy's capsule destructor reports it; the stub frees the tensor itself: nothing is lost.
    if "PyCapsule_GetPointer called with incorrect name" not in str(unraisable.exc_value):
        _hook(unraisable)


sys.unraisablehook = _quiet_capsules


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def _run(self, feeds):
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))

    def execute(self, requests):
        feeds = [{{n: np.from_dlpack(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs}} for r in requests]
        same = all(f[n].shape[1:] == feeds[0][n].shape[1:] for f in feeds for n in self.inputs)
        if self.batched and len(feeds) > 1 and same:
            merged = self._run({{n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}})
            ends = np.cumsum([f[self.inputs[0]].shape[0] for f in feeds])
            results = [{{n: v[end - len(f[self.inputs[0]]):end] for n, v in merged.items()}} for f, end in zip(feeds, ends)]
        else:
            results = [self._run(f) for f in feeds]
        return [pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack(n, np.ascontiguousarray(v).__dlpack__()) for n, v in r.items()]) for r in results]
'''


def site_paths() -> list[str]:
    """This interpreter's site-packages folders (platform-specific first), without duplicates."""
    paths = [sysconfig.get_paths()["platlib"], sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    return list(dict.fromkeys(paths))


def python_model_source(paths: list[str] | None = None) -> str:
    """The text of ``model.py`` (``paths``: site-packages to put on ``sys.path``; default this interpreter's)."""
    return _TEMPLATE.format(paths=paths if paths is not None else site_paths())


def python_version() -> str:
    """``3.11``: the Python the stub in the repository README must match."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"
