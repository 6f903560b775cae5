"""Attention blocks for vision models, and named ready-to-export models built from them."""

from attn_deploy.zoo.blocks import (
    CrossRegionAttention,
    DynamicAttention,
    MultiScaleAttention,
    SelfAttention,
    SmallObjectAttention,
    attention_entropy,
)
from attn_deploy.zoo.detection import add_attention
from attn_deploy.zoo.registry import ZooEntry, get_entry, list_entries

__all__ = [
    "CrossRegionAttention",
    "DynamicAttention",
    "MultiScaleAttention",
    "SelfAttention",
    "SmallObjectAttention",
    "ZooEntry",
    "add_attention",
    "attention_entropy",
    "get_entry",
    "list_entries",
]
