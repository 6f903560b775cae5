"""Build TensorRT / TensorRT-RTX engines from exported models (TensorRT is imported lazily).

An engine's report is ``attn_deploy.artifact.io.engine_report_path(ENGINE)`` (``ENGINE.json``).
"""

from attn_deploy.engine.build import BuildOptions, BuildResult, build_engine

__all__ = ["BuildOptions", "BuildResult", "build_engine"]
