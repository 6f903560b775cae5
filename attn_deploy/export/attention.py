"""Every attention of an exported model: routed through the op, fused from the graph, or left plain.

Routing (``routing.py``) catches SDPA and ``nn.MultiheadAttention`` while tracing; attention
written by hand (``bmm``/``softmax``/``bmm``, Swin's windows) exports as plain ops, which the fuse
pass then finds in the exported graph. What neither catches is recorded with the fuse pass's reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.artifact.manifest import AttentionFinding
from attn_deploy.errors import AttnDeployError, InputError, first_line


def _fuse_candidates(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes the fuse pass tries, in graph order (its order: see ``fuse/fuser.py``)."""
    return [n.name for n in model.graph.node if n.op_type in ("Softmax", "Attention", "MultiHeadAttention")]


def find_attention(
    model: onnx.ModelProto, scopes: Mapping[str, str] | None = None
) -> tuple[onnx.ModelProto, list[AttentionFinding], str | None]:
    """``model`` with what is left of its attention fused, one finding per attention, and a note
    when the fuse pass failed (the export stands as routed; ``fuse`` on the file says more).

    ``scopes`` (``export/scopes.py``) gives each finding its PyTorch module: a routed node's own, a
    fused attention's Softmax's (the fuse pass tries candidates in graph order, so the ones that
    disappeared, in order, are the fused ones). The model comes back unchanged (the same object)
    when nothing was fused.
    """
    from attn_deploy.fuse.fuser import fuse_model

    scopes = scopes or {}
    routed = [AttentionFinding(n.name, "routed", module=scopes.get(n.name)) for n in fused_attention_nodes(model)]
    if not any(n.op_type == "Softmax" for n in model.graph.node):
        return model, routed, None  # every attention went through the op: nothing for the fuse pass to find
    before = _fuse_candidates(model)
    try:
        outcome = fuse_model(model)
    except AttnDeployError as e:  # a fuse-pass bug must not cost the user an export that worked
        return model, routed, f"the fuse pass failed ({first_line(e)}); attention written by hand stays plain"
    left = set(_fuse_candidates(outcome.model))
    replaced = [scopes.get(name) for name in before if name not in left]
    if len(replaced) != len(outcome.fused):
        replaced = [None] * len(outcome.fused)
    fused = [AttentionFinding(r["name"], "fused", r["pattern"], module) for r, module in zip(outcome.fused, replaced)]
    plain = [AttentionFinding(m["node"], "plain", m["reason"], scopes.get(m["node"])) for m in outcome.near_misses if m["kind"] == "attention"]
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
