"""A runner over a model served by Triton Inference Server, through tritonclient's HTTP client.

Inputs are sent as binary tensors; when the workload's names differ from the served model's (a
PyTorch SOURCE's ``input`` against an export's ``x``), they are matched by position, as the
served model lists its I/O in the ONNX graph's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from attn_deploy.errors import InputError, first_line
from attn_deploy.runtime.base import Feeds, LoadedNamesRunner


def _positional(given: Sequence[str], served: Sequence[str]) -> dict[str, str]:
    """``given`` name -> ``served`` name: by name when they are the same set, else by position."""
    if set(given) == set(served) or len(given) != len(served):
        return {n: n for n in given}
    return dict(zip(given, served))


class TritonRunner(LoadedNamesRunner):
    """``infer`` sends the feeds to ``model`` at ``url`` (``http://host:port``) and returns its outputs."""

    name = "triton"

    def __init__(self, url: str, model: str, input_names: Sequence[str] = (), output_names: Sequence[str] = ()) -> None:
        self.url = url
        self.model = model
        self._inputs = list(input_names)
        self._outputs = list(output_names)
        self._served_inputs: list[str] = []
        self._served_outputs: list[str] = []
        self._client: Any = None

    def _activate(self) -> None:
        try:
            import tritonclient.http as http
        except ImportError:
            raise InputError("tritonclient is not installed: pip install 'attn-deploy[serve]'") from None
        parsed = urlparse(self.url if "://" in self.url else f"http://{self.url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(f"--triton-url {self.url!r} is not an HTTP endpoint like http://localhost:8000")
        client = http.InferenceServerClient(parsed.netloc, ssl=parsed.scheme == "https")
        try:
            if not client.is_model_ready(self.model):
                raise InputError(f"Triton at {self.url} does not serve a ready model {self.model!r}; check --triton-model and the server's log")
            meta = client.get_model_metadata(self.model)
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - connection errors come as several types
            raise InputError(f"cannot reach Triton at {self.url}: {first_line(e)}; start the server or fix --triton-url") from None
        self._client = client
        self._served_inputs = [t["name"] for t in meta["inputs"]]
        self._served_outputs = [t["name"] for t in meta["outputs"]]
        self._inputs = self._inputs or list(self._served_inputs)
        self._outputs = self._outputs or list(self._served_outputs)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def infer(self, feeds: Feeds) -> Feeds:
        import tritonclient.http as http
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        self.activate()
        names = _positional(list(feeds), self._served_inputs)
        inputs = []
        for given, array in feeds.items():
            array = np.ascontiguousarray(array)
            tensor = http.InferInput(names[given], list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        requested = [http.InferRequestedOutput(n, binary_data=True) for n in self._served_outputs]
        try:
            result = self._client.infer(self.model, inputs, outputs=requested)
        except InferenceServerException as e:
            raise InputError(f"Triton model {self.model!r} refused the request: {first_line(e)}") from None
        back = {served: given for given, served in _positional(self._outputs, self._served_outputs).items()}
        return {back.get(n, n): np.asarray(result.as_numpy(n)) for n in self._served_outputs}
