"""The output folder: PNGs per image × attention, a contact sheet per image, ``maps.npz`` and ``index.html``,
written into a temporary folder beside DIR and renamed onto it (DIR is the whole new result or untouched).

``maps.npz`` keys, per image ``i`` and attention ``j`` (graph order): ``image{i}_site{j}_torch`` and
``..._ort`` (``[H, R, Nk]`` softmax rows, one per query, each summing to 1), ``..._tokens`` (``[R, 2]``:
batch·window index and token of each query), ``..._pixels`` (``[R, 2]`` model-input x, y; NaN for a
class token), ``..._rollout`` (``[R, Nk]``); ``image{i}_path``, ``site{j}_grid`` (h, w, stride_y,
stride_x, extra, window) and ``site{j}_name``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attn_deploy.artifact.fileio import atomic_folder
from attn_deploy.errors import InputError
from attn_deploy.visualize import render
from attn_deploy.visualize.html import ImageSection, index_html

if TYPE_CHECKING:
    from PIL import Image

    from attn_deploy.visualize.run import ImageMaps, SiteMaps, VisualizeOptions, VisualizeResult

INDEX = "index.html"
MAPS = "maps.npz"


def check_output(folder: Path) -> None:
    """``InputError`` unless ``folder`` is new, empty, or an earlier visualize output (which is replaced)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o {folder} is a file; name a folder for the maps")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / INDEX).is_file():
        raise InputError(f"-o {folder} exists and is not an earlier visualize output; name a new or empty folder")
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"-o {folder}: cannot write to {parent}; pick another folder")


def _panels(base: Image.Image, m: SiteMaps, model_hw: tuple[int, int], heads: bool, which: str = "rows") -> list[Image.Image]:
    """One panel per query (per query and head with ``heads``); ``which``: rows, diff or rollout."""
    grid = m.site.grid
    out = []
    for r, q in enumerate(m.queries):
        if which == "rollout":
            assert m.rollout is not None
            layers: list[tuple[str, np.ndarray]] = [("rollout", m.rollout[r])]
        else:
            rows = m.rows if which == "rows" else m.torch - m.ort  # type: ignore[operator]
            layers = [(f"head {h}", rows[h, r]) for h in range(rows.shape[0])] if heads else [("", rows[:, r].mean(axis=0))]
        for label, row in layers:
            title = f"{q.label} {label}".strip() + (" PyTorch-ORT" if which == "diff" else "")
            heat = grid.layout(q.window, row)
            out.append(render.overlay(base, heat, grid, model_hw, q.pixel, title, signed=which == "diff"))
    return out


def _save(image: Image.Image, path: Path) -> None:
    image.save(path, compress_level=3)  # faster than the default level 6, files a little larger


def _render(folder: Path, image_maps: ImageMaps, index: int, model_hw: tuple[int, int], options: VisualizeOptions) -> tuple[ImageSection, list[Path]]:
    from attn_deploy.visualize.run import output_name

    stem = output_name(image_maps.path, index)
    base = render.load_display(image_maps.path)
    figures: list[tuple[str, str]] = []
    files: list[Path] = []
    sheet_rows = []
    for m in image_maps.maps:
        kinds = ["rows"] + (["diff"] if options.diff and m.torch is not None and m.ort is not None else []) + (["rollout"] if m.rollout is not None else [])
        for kind in kinds:
            panels = _panels(base, m, model_hw, options.heads, kind)
            suffix = "" if kind == "rows" else f"_{kind}"
            name = f"{stem}_{m.site.index:02d}_{m.site.slug}{suffix}.png"
            _save(render.strip(panels), folder / name)
            files.append(folder / name)
            source = "PyTorch" if m.torch is not None else "ONNX Runtime"
            caption = {"rows": source, "diff": "PyTorch minus ONNX Runtime", "rollout": "attention rollout"}[kind]
            figures.append((f"{m.site.name}: {caption}, {m.site.grid.describe()}", name))
            sheet_rows.append((f"{m.site.index}: {m.site.slug}" + (f" ({kind})" if kind != "rows" else ""), panels))
    sheet = f"{stem}_sheet.png"
    _save(render.contact_sheet(sheet_rows), folder / sheet)
    files.append(folder / sheet)
    return ImageSection(image_maps.path.name, sheet, figures), files


def _arrays(result: VisualizeResult) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for s in result.sites:
        g = s.grid
        arrays[f"site{s.index}_grid"] = np.array([g.h, g.w, g.stride_y, g.stride_x, g.extra, g.window], np.float64)
        arrays[f"site{s.index}_name"] = np.array(s.name)
    for i, image in enumerate(result.images):
        arrays[f"image{i}_path"] = np.array(str(image.path))
        for m in image.maps:
            key = f"image{i}_site{m.site.index}"
            arrays[f"{key}_tokens"] = np.array([[q.window, q.token] for q in m.queries], np.int64)
            arrays[f"{key}_pixels"] = np.array([q.pixel if q.pixel is not None else (np.nan, np.nan) for q in m.queries], np.float64)
            for name, value in (("torch", m.torch), ("ort", m.ort), ("rollout", m.rollout)):
                if value is not None:
                    arrays[f"{key}_{name}"] = value
    return arrays


def write_folder(result: VisualizeResult, model_hw: tuple[int, int], options: VisualizeOptions) -> list[Path]:
    """Render and write everything to ``result.output``; the files' final paths."""
    folder = result.output
    with atomic_folder(folder, "the maps") as tmp:
        sections, files = [], []
        for i, image in enumerate(result.images):
            section, written = _render(tmp, image, i, model_hw, options)
            sections.append(section)
            files += written
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **_arrays(result))  # type: ignore[arg-type]
        (tmp / MAPS).write_bytes(buffer.getvalue())
        (tmp / INDEX).write_text(index_html(f"attention maps: {folder.name}", result.sites, _diffs(result), sections, result.notes), encoding="utf-8")
    return [folder / f.name for f in files] + [folder / MAPS, folder / INDEX]


def _diffs(result: VisualizeResult) -> dict[int, float]:
    diffs: dict[int, float] = {}
    for image in result.images:
        for m in image.maps:
            if m.torch is not None and m.ort is not None:
                diffs[m.site.index] = max(diffs.get(m.site.index, 0.0), float(np.abs(m.torch - m.ort).max()))
    return diffs
