"""The repository's ``README.md``: how to serve it, load the plugin, measure it, and run replicas."""

from __future__ import annotations

from collections.abc import Sequence

from attn_deploy.package.models import ModelSpec
from attn_deploy.package.perf_data import SUFFIX as PERF_DATA
from attn_deploy.package.preprocess import IMAGE
from attn_deploy.package.python_model import python_version

_NGC = "nvcr.io/nvidia/tritonserver:25.10-py3"


def _plugin_flags(models: Sequence[ModelSpec]) -> list[str]:
    libs = [f"/models/{m.name}/1/{m.plugin.name}" for m in models if m.plugin is not None]
    return [f"--backend-config=tensorrt,plugins={';'.join(libs)}"] if libs else []


def _ensemble_text(ensembles: Sequence[ModelSpec]) -> str:
    if not ensembles:
        return ""
    names = ", ".join(f"`{m.name}`" for m in ensembles)
    return (f"\nThe ensembles ({names}) take RGB pixels as `{IMAGE}` (uint8, `[N, height, width, 3]`, any size) and run the model's "
            f"preprocessing (resize, scale and normalise as its manifest records) in front of it: `{ensembles[0].steps[0].model}`, "
            f"then `{ensembles[0].steps[-1].model}`.\n")


def readme_text(models: Sequence[ModelSpec]) -> str:
    """Markdown for a repository holding ``models``."""
    rows = "\n".join(f"| `{m.name}` | {m.backend} | {', '.join(t.name for t in m.inputs)} | {', '.join(t.name for t in m.outputs)} |" for m in models)
    flags = " ".join(["tritonserver --model-repository=/models", *_plugin_flags(models)])
    plugins = [m for m in models if m.plugin is not None]
    preload = ":".join(f"/models/{m.name}/1/{m.plugin.name}" for m in plugins if m.plugin is not None)
    plugin_text = (
        f"\nThe TensorRT plans need the FusedAttention plugin: it is copied next to each plan, and the server loads it with "
        f"`--backend-config=tensorrt,plugins=...` (above), or with `LD_PRELOAD={preload}` in the container's environment.\n"
        if plugins else ""
    )
    python = [m for m in models if m.backend == "python"]
    python_text = (
        f"\nThe `python` models run `model.onnx` with ONNX Runtime on the CPU. Their `model.py` puts the site-packages of the "
        f"Python {python_version()} that wrote them on `sys.path` (the backend's stub does not inherit `PYTHONPATH`); in a "
        f"container, install numpy and onnxruntime there or give the model an execution environment.\n"
        if python else ""
    )
    ensemble_text = _ensemble_text([m for m in models if m.backend == "ensemble"])
    first = models[0]
    return f"""# Triton model repository (written by attn-deploy)

| model | backend | inputs | outputs |
|---|---|---|---|
{rows}

## Start the server

    docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD:/models {_NGC} \\
        {flags}
{plugin_text}{python_text}{ensemble_text}
## Check and measure it

    attn-deploy check MODEL --backends torch,triton --triton-url http://localhost:8000 --triton-model {first.name}
    attn-deploy bench MODEL --backends triton --triton-url http://localhost:8000 --triton-model {first.name}
    perf_analyzer -m {first.name} -u localhost:8000 --input-data {first.name}{PERF_DATA} --concurrency-range 1:4

Each model has its `NAME{PERF_DATA}` here: one request's inputs at the shapes the manifest records (random, as `check` draws them).

## Replicas on Kubernetes (KServe)

```yaml
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {first.name.lower().replace("_", "-").replace(".", "-")}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 4
    triton:
      storageUri: s3://BUCKET/PATH/TO/THIS/REPOSITORY
      args: {["--strict-model-config=false", *_plugin_flags(models)]!r}
      resources:
        limits: {{nvidia.com/gpu: "1"}}
```
"""
