"""The input-data JSON ``perf_analyzer --input-data`` reads, one file per model at the repository's root.

One request's inputs (the batch axis left out for a batched model, as perf_analyzer forms batches
itself) at the warm-up shapes, drawn as ``check`` draws random inputs (images in [0, 1], uint8 pixels
in 0..255), base64 so a large input stays a few megabytes. Files at the root are not models to Triton.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from attn_deploy import defaults
from attn_deploy.package.models import ModelSpec
from attn_deploy.runtime.inputs import InputSpec, random_feeds

SUFFIX = ".perf_data.json"


def perf_data(spec: ModelSpec, batched: bool) -> dict[str, Any]:
    """``{"data": [{INPUT: {"b64": ..., "shape": [...]}}]}`` for one request to ``spec``."""
    preprocess = spec.artifact.manifest.preprocess if spec.artifact is not None else None
    shapes = {t.name: [1, *spec.warmup_shapes[t.name][1:]] if batched else spec.warmup_shapes[t.name] for t in spec.inputs}
    inputs = [InputSpec(t.name, tuple(shapes[t.name]), np.dtype(t.dtype or "float32"), high=256 if t.dtype == "uint8" else None) for t in spec.inputs]
    feeds = {name: a[0] if batched else a for name, a in random_feeds(inputs, defaults.SEED, None, preprocess).items()}
    request = {name: {"b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii"), "shape": list(a.shape)} for name, a in feeds.items()}
    return {"data": [request]}
