"""The spine every stage shares: ``Artifact`` (model + typed ``Manifest``), ``AttentionSite``, loading and saving.

Names are imported on first use: ``attn_deploy.artifact.fileio`` (which every CLI command imports)
must not load onnx-ir, whose import pulls in sympy and takes seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attn_deploy.artifact.artifact import Artifact
    from attn_deploy.artifact.io import load_artifact, load_onnx, read_manifest, save_artifact
    from attn_deploy.artifact.manifest import Manifest, Precision, SiteRecord, TensorSpec
    from attn_deploy.artifact.sites import AttentionSite, attention_sites

_MODULES = {
    "Artifact": "artifact",
    "load_artifact": "io", "load_onnx": "io", "read_manifest": "io", "save_artifact": "io",
    "Manifest": "manifest", "Precision": "manifest", "SiteRecord": "manifest", "TensorSpec": "manifest",
    "AttentionSite": "sites", "attention_sites": "sites",
}

__all__ = [
    "Artifact", "AttentionSite", "Manifest", "Precision", "SiteRecord", "TensorSpec",
    "attention_sites", "load_artifact", "load_onnx", "read_manifest", "save_artifact",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
