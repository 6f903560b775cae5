"""attn-deploy: ship attention-augmented vision models to ONNX Runtime and TensorRT.

The public Python API is ``attn_deploy.api`` (one function per stage)::

    import attn_deploy.api as ad
    artifact = ad.export("zoo:sagan-256")
    assert ad.check("zoo:sagan-256", artifact).passed

It is a module of its own because the stage packages (``attn_deploy.export``, ``.fuse``,
``.lower``, ``.quantize``, ``.check``, ``.bench``) own those names here. ``Artifact`` and ``load``
are re-exported at the top; everything is imported on first use, so ``import attn_deploy`` is light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Artifact", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name == "Artifact":
        from attn_deploy.artifact.artifact import Artifact

        return Artifact
    if name == "load":
        from attn_deploy.api import load

        return load
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
