"""What every stage's table renderer shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich.table import Table

from attn_deploy.artifact.fileio import write_bytes_atomic


def with_notes(table: Table, notes: Sequence[str]) -> Table:
    """``table`` with ``notes`` (skipped backends, warnings) as a left-aligned caption under it."""
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def write_files(files: Sequence[tuple[Path | None, Callable[[], bytes]]]) -> None:
    """Write each ``(path, content)`` whose path is given, atomically; content is made only when needed."""
    for path, content in files:
        if path:
            write_bytes_atomic(path, content())
