"""Every attention of an exported model: routed through the op, fused from the graph, or left plain.

Routing (``routing.py``) catches SDPA and ``nn.MultiheadAttention`` while tracing; attention
written by hand (``bmm``/``softmax``/``bmm``, Swin's windows) exports as plain ops, which the fuse
pass then finds in the exported graph. What neither catches is recorded with the fuse pass's reason.
"""

from __future__ import annotations

import onnx

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.artifact.manifest import AttentionFinding
from attn_deploy.errors import AttnDeployError, InputError, first_line


def find_attention(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[AttentionFinding], str | None]:
    """``model`` with what is left of its attention fused, one finding per attention, and a note
    when the fuse pass failed (the export stands as routed; ``fuse`` on the file says more).

    The model comes back unchanged (the same object) when nothing was fused.
    """
    from attn_deploy.fuse.fuser import fuse_model

    routed = [AttentionFinding(n.name, "routed") for n in fused_attention_nodes(model)]
    if not any(n.op_type == "Softmax" for n in model.graph.node):
        return model, routed, None  # every attention went through the op: nothing for the fuse pass to find
    try:
        outcome = fuse_model(model)
    except AttnDeployError as e:  # a fuse-pass bug must not cost the user an export that worked
        return model, routed, f"the fuse pass failed ({first_line(e)}); attention written by hand stays plain"
    fused = [AttentionFinding(r["name"], "fused", r["pattern"]) for r in outcome.fused]
    plain = [AttentionFinding(m["node"], "plain", m["reason"]) for m in outcome.near_misses if m["kind"] == "attention"]
    return (outcome.model if fused else model), routed + fused + plain, None


def plain_warnings(findings: list[AttentionFinding]) -> list[str]:
    """One line per attention left plain: the node and why."""
    return [f"attention left unfused at {f.node!r}: {f.detail}" for f in findings if f.status == "plain"]


def refuse_plain(findings: list[AttentionFinding]) -> None:
    """``--strict``: an attention left plain is an ``InputError`` (one line, the first one named)."""
    plain = [f for f in findings if f.status == "plain"]
    if plain:
        first = plain[0]
        more = f" (and {len(plain) - 1} more)" if len(plain) > 1 else ""
        raise InputError(f"--strict: attention left unfused at {first.node!r}: {first.detail}{more}; drop --strict to export it as plain ops")
