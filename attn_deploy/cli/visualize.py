"""``attn-deploy visualize``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import Arch, UnsafeLoad
from attn_deploy.errors import InputError


def parse_point(text: str) -> tuple[float, float]:
    """``x,y`` in pixels -> (x, y); ``InputError`` otherwise."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--query {text!r} must be x,y in the image's pixels, e.g. --query 120,80") from None
    if x < 0 or y < 0:
        raise InputError(f"--query {text!r} lies outside the image; pixels count from 0,0 at the top left")
    return x, y


@one_line_errors
def visualize(
    model: Annotated[str, typer.Argument(help="MODEL (zoo:NAME, a file, module:factory) run in PyTorch, or an exported .onnx run in ONNX Runtime.")],
    data: Annotated[list[Path], typer.Option("--data", help="An image or a folder of images (repeatable).")],
    out_dir: Annotated[Path, typer.Option("-o", "--output", help="Folder to write: PNGs, contact sheets, index.html and maps.npz.")],
    node: Annotated[list[str] | None, typer.Option("--node", help="Attention to show: ONNX node name, PyTorch module name or index (repeatable; default all).")] = None,
    query: Annotated[list[str] | None, typer.Option("--query", help="Query point x,y in the image's pixels (repeatable; default: the attention's salient points).")] = None,
    heads: Annotated[bool, typer.Option("--heads", help="One panel per head instead of heads averaged.")] = False,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="The ONNX artifact exported from MODEL: its maps from ONNX Runtime too (maps.npz, --diff).")] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Render PyTorch minus ONNX Runtime (needs MODEL and --onnx).")] = False,
    rollout: Annotated[bool, typer.Option("--rollout", help="Attention rollout over stacks of attentions on the same tokens (N at most 4096).")] = False,
    points: Annotated[int, typer.Option("--points", min=1, max=16, help="Salient query points per attention when no --query is given.")] = defaults.VISUALIZE_POINTS,
    arch: Arch = None,
    unsafe_load: UnsafeLoad = False,
) -> None:
    """Attention maps on the input images: where each attention looks, for chosen query pixels."""
    from attn_deploy import api
    from attn_deploy.visualize.run import VisualizeOptions

    options = VisualizeOptions(
        nodes=tuple(node or ()), queries=tuple(parse_point(q) for q in query or ()), heads=heads, diff=diff,
        rollout=rollout, onnx=onnx, points=points, arch=arch, unsafe_load=unsafe_load,
    )
    result = api.visualize(model, data, out_dir, options)  # checks -o before any work
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)
    out.print(f"{len(result.sites)} attention(s) x {len(result.images)} image(s)", highlight=False)
    if result.max_diff is not None:
        out.print(f"max |PyTorch - ONNX Runtime| over the maps: {result.max_diff:.2e}", highlight=False)
    err.print(f"wrote {out_dir / 'index.html'} and {len(result.files) - 1} more file(s)", highlight=False)
