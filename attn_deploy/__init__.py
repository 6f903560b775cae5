"""attn-deploy: ship attention-augmented vision models to ONNX Runtime and TensorRT.

The public API (``attn_deploy.api``) is re-exported here and imported on first use, so
``import attn_deploy`` stays light::

    import attn_deploy as ad
    artifact = ad.export("zoo:sagan-256")
    assert ad.check("zoo:sagan-256", artifact).passed
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("Artifact", "StageResult", "as_artifact", "bench", "build_engine", "check", "export", "fuse", "load", "load_model", "lower", "quantize", "to_fp16")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from attn_deploy import api

        if name == "StageResult":
            from attn_deploy.artifact.stage import StageResult

            return StageResult
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
