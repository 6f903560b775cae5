"""The one op every stage shares: ``attn_deploy::FusedAttention`` (DESIGN.md §2)."""

from attn_deploy.ops.contract import DOMAIN, OP_TYPE, OPSET_VERSION
from attn_deploy.ops.torch_op import fused_attention, reference_attention

__all__ = ["DOMAIN", "OP_TYPE", "OPSET_VERSION", "fused_attention", "reference_attention"]
