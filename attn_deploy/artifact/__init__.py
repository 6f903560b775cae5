"""The spine every stage shares: ``Artifact`` (model + typed ``Manifest``), ``AttentionSite``, loading and saving."""

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.io import load_artifact, load_onnx, read_manifest, save_artifact
from attn_deploy.artifact.manifest import Manifest, Precision, SiteRecord, TensorSpec
from attn_deploy.artifact.sites import AttentionSite, attention_sites

__all__ = [
    "Artifact", "AttentionSite", "Manifest", "Precision", "SiteRecord", "TensorSpec",
    "attention_sites", "load_artifact", "load_onnx", "read_manifest", "save_artifact",
]
