"""Build TensorRT / TensorRT-RTX engines from exported models (TensorRT is imported lazily)."""

from attn_deploy.engine.build import (
    BuildOptions,
    BuildResult,
    build_engine,
    report_path_for,
)

__all__ = ["BuildOptions", "BuildResult", "build_engine", "report_path_for"]
