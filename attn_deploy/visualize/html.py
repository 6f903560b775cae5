"""``index.html``: the node table and, per image, its contact sheet and one figure per attention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attn_deploy.visualize.run import Site


@dataclass(frozen=True)
class ImageSection:
    """One input image: its name, its contact sheet and ``(caption, file)`` per figure."""

    name: str
    sheet: str
    figures: Sequence[tuple[str, str]]


def _cell(value: object) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, float):
        return f"<td>{value:.3g}</td>"
    return f"<td>{escape(str(value))}</td>"


def index_html(title: str, sites: Sequence[Site], diffs: Mapping[int, float], images: Sequence[ImageSection], notes: Sequence[str]) -> str:
    """The page: the node table (``diffs``: max |PyTorch - ORT| per site index), then each image's figures;
    every file it names is relative to the page's folder."""
    head = ["name", "module", "N (queries)", "N (keys)", "heads", "dk", "dv", "scale", "grid"] + (["max |PyTorch - ORT|"] if diffs else [])
    rows = []
    for s in sites:
        cells = [s.name, s.module, s.tokens, s.keys, s.heads, s.dk, s.dv, s.scale, s.grid.describe()] + ([diffs.get(s.index)] if diffs else [])
        rows.append("<tr>" + "".join(_cell(c) for c in cells) + "</tr>")
    parts = [
        "<!doctype html>", '<html><head><meta charset="utf-8">', f"<title>{escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:left}img{max-width:100%}figure{margin:1em 0}</style>",
        "</head><body>", f"<h1>{escape(title)}</h1>",
        "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>", *rows, "</table>",
    ]
    if notes:
        parts += ["<ul>", *(f"<li>{escape(n)}</li>" for n in notes), "</ul>"]
    for image in images:
        parts.append(f"<h2>{escape(image.name)}</h2>")
        parts.append(f'<figure><img src="{escape(image.sheet)}" alt="contact sheet"><figcaption>all attentions</figcaption></figure>')
        for caption, file in image.figures:
            parts.append(f'<figure><img src="{escape(file)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
