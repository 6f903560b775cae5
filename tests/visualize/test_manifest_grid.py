"""Export records the grid each attention's keys lie on; manifests without it still load."""

from __future__ import annotations

from attn_deploy import api
from attn_deploy.artifact.manifest import Manifest
from attn_deploy.zoo.blocks import SelfAttention


def test_export_records_the_feature_map_and_old_manifests_load() -> None:
    artifact = api.export(SelfAttention(16), input_shapes=[(1, 16, 6, 10)], exporter="torchscript")
    record = artifact.manifest.fused_attention[0]
    assert record.grid == {"h": 6, "w": 10}
    data = artifact.manifest.to_json()
    assert Manifest.from_json(data).fused_attention[0].grid == {"h": 6, "w": 10}
    del data["fused_attention"][0]["grid"]  # a manifest written before the field existed
    assert Manifest.from_json(data).fused_attention[0].grid is None
