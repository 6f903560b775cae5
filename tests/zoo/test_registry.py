"""Zoo entries: deterministic, seeded like trained models, attention inserted where promised."""

from __future__ import annotations

import pytest
import torch

from attn_deploy.zoo import SelfAttention, add_attention, get_entry, list_entries
from attn_deploy.zoo.blocks import CrossRegionAttention

REQUIRED = {
    "sagan-256", "sagan-2048", "dynamic-256", "cross-region-256", "fpn-multiscale", "fpn-small-object",
    "frcnn-r50-fpn-layer4", "frcnn-r50-fpn-multiscale", "mha-encoder", "sdpa-vit",
}


def test_required_entries_exist() -> None:
    assert REQUIRED <= {e.name for e in list_entries()}
    with pytest.raises(KeyError, match="known:"):
        get_entry("no-such-model")


@pytest.mark.parametrize("name", ["sagan-256", "cross-region-256", "sdpa-vit"])
def test_build_is_deterministic_and_gates_are_open(name: str) -> None:
    entry = get_entry(name)
    a, b = entry.build(), entry.build()
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(pa, pb)
    for m in a.modules():
        if isinstance(m, SelfAttention):
            assert m.gamma.item() != 0.0
        if isinstance(m, CrossRegionAttention):
            assert m.out.weight.abs().sum() > 0


def test_add_attention_places_blocks() -> None:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    def count(model: torch.nn.Module) -> int:
        return sum(isinstance(m, SelfAttention) for m in model.modules())

    def fresh() -> torch.nn.Module:
        return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)

    layer4 = add_attention(fresh(), "layer4")
    assert count(layer4) == 1
    assert isinstance(layer4.backbone.body.layer4[-1], SelfAttention)
    assert layer4.backbone.body.layer4[-1].value.in_channels == 2048
    assert count(add_attention(fresh(), "fpn")) == 5  # P2-P5 and pool
    assert count(add_attention(fresh(), "fpn-finest")) == 1
    with pytest.raises(ValueError, match="where must be one of"):
        add_attention(fresh(), "everywhere")  # type: ignore[arg-type]
