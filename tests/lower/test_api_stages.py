"""Every graph stage through the public API: an Artifact, a ModelProto or a path in; a StageResult out."""

from __future__ import annotations

from pathlib import Path

import onnx

from attn_deploy import api as ad
from attn_deploy.artifact.graph import fused_attention_nodes
from attn_deploy.ops.bodies import CONTRACT_ATTRIBUTES, plain_body
from attn_deploy.ops.contract import DOMAIN, LOWERED_DOMAIN, OP_TYPE
from tests.attention_graphs import encoder_block
from tests.fuse.models import Sdpa, export


def test_stages_take_a_proto_an_artifact_or_a_path(tmp_path: Path) -> None:
    proto = encoder_block(8, 16)
    path = tmp_path / "m.onnx"
    ad.as_artifact(proto).save(path)
    for given in (proto, ad.as_artifact(proto), path, str(path)):
        lowered = ad.lower(given)
        assert lowered.artifact.manifest.stages[-1] == "lower:ort"
        assert [c.node for c in lowered.summary] == ["attn0"]
        fp16 = ad.to_fp16(given)
        assert fp16.artifact.precision == "fp16"
    assert not any(f.domain == DOMAIN for f in lowered.artifact.proto.functions)  # pruned: no node calls it


def test_fuse_stage_evolves_the_artifact() -> None:
    result = ad.fuse(export(Sdpa(), (1, 16, 16), "torchscript", 18))
    assert len(result.summary.fused) == 1 and len(fused_attention_nodes(result.artifact.proto)) == 1
    assert result.artifact.manifest.stages[-1] == "fuse"


def test_one_plain_body_for_onnx_runtime_and_tensorrt() -> None:
    ort = plain_body(18, with_bias=True)
    trt = plain_body(18, with_bias=True, domain=DOMAIN, name=OP_TYPE, attributes=CONTRACT_ATTRIBUTES)
    assert (ort.domain, ort.name, list(ort.attribute)) == (LOWERED_DOMAIN, "FusedAttentionPlainBias", ["scale"])
    assert (trt.domain, trt.name, list(trt.attribute)) == (DOMAIN, OP_TYPE, list(CONTRACT_ATTRIBUTES))
    assert [n.op_type for n in ort.node] == [n.op_type for n in trt.node]
    onnx.checker.check_function(ort)  # type: ignore[attr-defined]
