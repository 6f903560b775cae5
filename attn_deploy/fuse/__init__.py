"""Find attention subgraphs in plain ONNX exports and replace them with FusedAttention.

One module per pattern family: ``sagan`` (``bmm(V, A^T)``), ``sdpa`` (``softmax(...) @ V``, both
exporters at opsets 17-22, hand-written attention), ``onnx_attention`` (opset 23 ``Attention``),
``ms_mha`` (``com.microsoft.MultiHeadAttention``); ``scores`` parses the shared score side and
``rewrite`` emits the node.
"""

from attn_deploy.fuse.fuser import (
    FuseAttentionPass,
    FuseOutcome,
    FuseResult,
    fuse_file,
    fuse_model,
)

__all__ = ["FuseAttentionPass", "FuseOutcome", "FuseResult", "fuse_file", "fuse_model"]
