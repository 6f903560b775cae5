"""``Artifact``: an ONNX model in memory plus its manifest, the one value every graph stage takes and returns.

Like torch.onnx's ``ONNXProgram`` it holds the model, saves it and is what a runner runs. The
model is kept as an onnx-ir ``Model`` or an ``onnx.ModelProto``, whichever the last stage wrote,
and converted on first use of the other view. An Artifact is a value: stages never change one
in place (the views are read-only by contract) but return a new one with ``evolve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from attn_deploy.artifact.manifest import Manifest, Precision
from attn_deploy.artifact.sites import AttentionSite, attention_sites

if TYPE_CHECKING:  # imported on first use of the onnx-ir view: its import (sympy) takes seconds
    import onnx_ir as ir


class Artifact:
    """A model and its manifest; ``path`` is where it was loaded from or last saved, if anywhere."""

    def __init__(self, model: ir.Model | onnx.ModelProto, manifest: Manifest, *, path: Path | None = None) -> None:
        self._proto = model if isinstance(model, onnx.ModelProto) else None
        self._ir = None if isinstance(model, onnx.ModelProto) else model
        self.manifest = manifest
        self.path = path
        #: The file this model, or the one a stage made it from, was loaded from (never overwritten by ``save``).
        self.origin = path
        self._sites: list[AttentionSite] | None = None

    @classmethod
    def describe(cls, model: onnx.ModelProto, *, source: str, exporter: str, path: Path | None = None, **fields: Any) -> Artifact:
        """An Artifact whose manifest is read off ``model`` (``fields`` add provenance)."""
        sites = attention_sites(model)
        artifact = cls(model, Manifest.describe(model, source=source, exporter=exporter, sites=sites, **fields), path=path)
        artifact._sites = sites
        return artifact

    @property
    def proto(self) -> onnx.ModelProto:
        """The model as a ModelProto (read-only: copy before changing it)."""
        if self._proto is None:  # then the onnx-ir view is the one set
            import onnx_ir as ir

            self._proto = ir.serde.serialize_model(self.model)
        return self._proto

    @property
    def model(self) -> ir.Model:
        """The model as an onnx-ir Model (read-only: stages build a new one or copy)."""
        if self._ir is None:  # then the ModelProto view is the one set
            import onnx_ir as ir

            self._ir = ir.serde.deserialize_model(self.proto)
        return self._ir

    @property
    def sites(self) -> list[AttentionSite]:
        """Every attention node, exported or lowered, in graph order."""
        if self._sites is None:
            self._sites = attention_sites(self.proto)
        return self._sites

    @property
    def precision(self) -> Precision:
        return self.manifest.precision

    @property
    def name(self) -> str:
        """A short name for tables and default file names."""
        if self.path is not None:
            return self.path.stem
        return Path(self.manifest.source.split(":", 1)[-1]).stem or "model"

    def evolve(self, model: ir.Model | onnx.ModelProto, *, stage: str, **manifest_changes: Any) -> Artifact:
        """The Artifact ``stage`` made of this one: the new model, its manifest derived from this one's."""
        if isinstance(model, onnx.ModelProto):
            proto = model
        else:
            import onnx_ir as ir

            proto = ir.serde.serialize_model(model)
        sites = attention_sites(proto)
        manifest = self.manifest.derive(proto, stage=stage, **manifest_changes)
        artifact = Artifact(proto, manifest)
        artifact.origin = self.origin
        artifact._sites = sites
        return artifact

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (.onnx) and its manifest (.json) together; see ``attn_deploy.artifact.io``."""
        from attn_deploy.artifact.io import save_artifact

        return save_artifact(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        from attn_deploy.artifact.io import load_artifact

        return load_artifact(path)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<Artifact {self.name}{where}: {len(self.manifest.fused_attention)} attention site(s), {self.precision}>"
