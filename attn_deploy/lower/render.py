"""What ``attn-deploy lower`` and ``attn-deploy inspect`` show: one table each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from attn_deploy.lower.choice import NodeChoice


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f}"


def lowered_table(model_name: str, target: str, choices: Sequence[NodeChoice]) -> Table:
    """One row per node: the implementation it became, its query-block rows and why."""
    table = Table(title=f"{model_name} lowered for {target}")
    for col in ("node", "implementation", "block rows", "why"):
        table.add_column(col)
    for c in choices:
        table.add_row(c.node, c.op_type, "-" if c.block_rows is None else str(c.block_rows), c.reason)
    return table


def inspect_table(model_name: str, records: Sequence[dict[str, Any]]) -> Table:
    """One row per FusedAttention node of ``inspect``'s records: shapes, sizes and each target's choice."""
    table = Table(title=f"{model_name}: {len(records)} attention node(s); trt: plugin if loaded, else the shown fallback")
    for col in ("node", "runs now", "B,H,Nq,Nk,dk,dv", "dtype", "bias", "scores MiB", "GFLOP", "ort", "trt"):
        table.add_column(col, justify="right" if col in ("scores MiB", "GFLOP") else "left", overflow="fold")
    for r in records:
        gflop = "?" if r["flops"] is None else f"{r['flops'] / 1e9:,.2f}"
        trt = r["targets"]["trt"].removeprefix("plugin if loaded, else ")
        table.add_row(
            r["name"], r["implementation"], ",".join(str(r[k]) for k in ("B", "H", "Nq", "Nk", "dk", "dv")),
            str(r["dtype"]), "yes" if r["has_bias"] else "no", _mib(r["score_matrix_bytes"]), gflop,
            r["targets"]["ort"]["implementation"], trt,
        )
    return table
