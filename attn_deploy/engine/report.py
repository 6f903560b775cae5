"""What the builder tells us about a network and an engine, as plain JSON-able data."""

from __future__ import annotations

from collections import Counter
from typing import Any

from attn_deploy.engine.backend import TrtBackend


def _name(value: Any) -> str:
    return str(value).split(".")[-1]


def network_layers(network: Any) -> list[dict[str, Any]]:
    """Every layer of the parsed network: name, type, and its outputs' dtypes and shapes."""
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        layers.append(
            {
                "name": layer.name,
                "type": _name(layer.type),
                "outputs": [{"name": t.name, "dtype": _name(t.dtype), "shape": list(t.shape)} for t in outputs if t is not None],
            }
        )
    return layers


def layer_summary(layers: list[dict[str, Any]]) -> dict[str, Any]:
    types = Counter(layer["type"] for layer in layers)
    dtypes = Counter(o["dtype"] for layer in layers for o in layer["outputs"])
    return {"count": len(layers), "by_type": dict(types.most_common()), "output_dtypes": dict(dtypes.most_common())}


def engine_layers(backend: TrtBackend, engine_bytes: bytes) -> tuple[list[Any] | None, str | None]:
    """Per-layer engine information from TensorRT's inspector, or ``(None, why)``.

    Deserialising an engine needs a GPU, so on a CPU-only machine only the network is described.
    """
    import json

    from attn_deploy.runtime.gpu import gpu_available

    ok, why = gpu_available()
    if not ok:
        return None, f"engine inspection needs an NVIDIA GPU ({why}); the network's layers are listed instead"
    trt = backend.trt
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        return None, "the engine could not be deserialised on this GPU (built for another compute capability?)"
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return info.get("Layers", info), None
