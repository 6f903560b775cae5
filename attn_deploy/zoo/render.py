"""What ``attn-deploy zoo list`` shows: the built-in models as a table or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from attn_deploy.zoo.registry import ZooEntry


def to_json(entries: Sequence[ZooEntry]) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "description": e.description, "input_shapes": e.input_shapes, "attention_blocks": e.attention_blocks}
        for e in entries
    ]


def zoo_table(entries: Sequence[ZooEntry]) -> Table:
    table = Table(title="attn-deploy zoo")
    for col in ("name", "input", "blocks", "description"):
        table.add_column(col)
    for e in entries:
        table.add_row(f"zoo:{e.name}", ", ".join("x".join(map(str, s)) for s in e.input_shapes), str(e.attention_blocks), e.description)
    return table
