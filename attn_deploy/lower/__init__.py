"""``lower``: rewrite FusedAttention nodes for one target (ONNX Runtime now; TensorRT in ``trt.py``).

``lower_model(model, target="ort", max_attn_mem=256 MiB, prefer="auto") -> (model, choices)`` is the
library entry point; ``lower_file`` adds file I/O and the manifest; ``inspect_model`` reports what
each target would run.
"""

from attn_deploy.lower.api import (
    TARGETS,
    LowerResult,
    lower_artifact,
    lower_file,
    lower_model,
)
from attn_deploy.lower.choice import DEFAULT_MAX_ATTN_MEM, NodeChoice
from attn_deploy.lower.inspect import inspect_file, inspect_model

__all__ = ["DEFAULT_MAX_ATTN_MEM", "TARGETS", "LowerResult", "NodeChoice", "inspect_file", "inspect_model", "lower_artifact", "lower_file", "lower_model"]
