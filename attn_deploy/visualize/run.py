"""``visualize``: attention maps of a model's attentions for query points of real images, from PyTorch
and/or ONNX Runtime, written to a folder of PNGs, ``index.html`` and ``maps.npz`` (all or nothing)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attn_deploy import defaults
from attn_deploy.errors import InputError
from attn_deploy.visualize.grid import TokenGrid, infer_grid, known_grid
from attn_deploy.visualize.queries import Query, pixel_queries, salient_queries, top_queries

if TYPE_CHECKING:
    from attn_deploy.artifact.artifact import Artifact
    from attn_deploy.export.loading import LoadedModel
    from attn_deploy.ops.recording import AttentionCall
    from attn_deploy.runtime.inputs import InputSpec
    from attn_deploy.runtime.ort_runner import OrtRunner
    from attn_deploy.visualize.onnx_maps import DebugModel


@dataclass(frozen=True)
class Site:
    """One attention as visualize shows it: where it is (index in graph order), its shapes and grid."""

    index: int
    name: str
    #: The PyTorch module that made the call (None from an ONNX model alone).
    module: str | None
    #: The op's B: images·windows.
    batch: int
    heads: int
    #: Nq and Nk.
    tokens: int
    keys: int
    #: Head sizes (dk None when an ONNX graph leaves it dynamic) and the softmax scale.
    dk: int | None
    dv: int | None
    scale: float
    grid: TokenGrid

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.module or self.name).strip("_") or f"attention{self.index}"


@dataclass(frozen=True)
class VisualizeOptions:
    """What to show and how (the CLI's options)."""

    #: Attentions to show (ONNX node names, PyTorch module names or indices); all when empty.
    nodes: tuple[str, ...] = ()
    #: Query points in the input image's own pixels (x, y); salient points when empty.
    queries: tuple[tuple[float, float], ...] = ()
    #: One panel per head instead of heads averaged.
    heads: bool = False
    #: Render the difference between the PyTorch and ONNX Runtime maps (needs both).
    diff: bool = False
    #: Attention rollout over each stack of attentions on the same tokens.
    rollout: bool = False
    #: An ONNX artifact to run in ONNX Runtime beside a PyTorch MODEL.
    onnx: Path | None = None
    #: Salient query points per attention when ``queries`` is empty.
    points: int = defaults.VISUALIZE_POINTS
    #: How to load MODEL, as for ``export`` (a state dict's architecture; trusting a pickled file).
    arch: str | None = None
    unsafe_load: bool = False


@dataclass
class SiteMaps:
    """One image × one attention: the queries and their rows ``[H, R, Nk]`` per backend, and the rollout rows ``[R, Nk]``."""

    site: Site
    queries: list[Query]
    torch: np.ndarray | None = None
    ort: np.ndarray | None = None
    rollout: np.ndarray | None = None

    @property
    def rows(self) -> np.ndarray:
        """The rows shown: PyTorch's when there, else ONNX Runtime's."""
        rows = self.torch if self.torch is not None else self.ort
        assert rows is not None
        return rows


@dataclass
class ImageMaps:
    path: Path
    size: tuple[int, int]  # the image's own (width, height)
    maps: list[SiteMaps]


@dataclass
class VisualizeResult:
    output: Path
    sites: list[Site]
    images: list[ImageMaps]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def max_diff(self) -> float | None:
        """The largest |PyTorch - ONNX Runtime| over every row computed by both, None without both."""
        diffs = [float(np.abs(m.torch - m.ort).max()) for i in self.images for m in i.maps if m.torch is not None and m.ort is not None]
        return max(diffs) if diffs else None


@dataclass
class _Sources:
    loaded: LoadedModel | None
    artifact: Artifact | None
    spec: InputSpec
    preprocess: dict[str, object] | None


def _is_onnx(model: str) -> bool:
    return model.lower().endswith(".onnx")


def _open(model: str | LoadedModel, options: VisualizeOptions) -> _Sources:
    from attn_deploy import api
    from attn_deploy.runtime.inputs import InputSpec, input_specs, is_image

    loaded, artifact = None, None
    if not isinstance(model, str):
        loaded = model
        if options.onnx is not None:
            artifact = api.load(options.onnx)
    elif _is_onnx(model):
        if options.onnx is not None:
            raise InputError("--onnx is for a PyTorch MODEL; give one ONNX model, or MODEL and --onnx FILE")
        artifact = api.load(model)
    else:
        loaded = api.load_model(model, arch=options.arch, unsafe_load=options.unsafe_load)
        if options.onnx is not None:
            artifact = api.load(options.onnx)
    if options.diff and (loaded is None or artifact is None):
        raise InputError("--diff compares PyTorch with ONNX Runtime: give a PyTorch MODEL and --onnx FILE.onnx")
    if artifact is not None:
        specs = input_specs(artifact)
        preprocess = artifact.manifest.preprocess
    else:
        assert loaded is not None
        specs = [InputSpec("input", tuple(s), np.dtype("float32")) for s in loaded.input_shapes]
        preprocess = loaded.preprocess
    if len(specs) != 1 or not is_image(specs[0]):
        shapes = ", ".join(str(list(s.shape)) for s in specs) or "no known input shape"
        raise InputError(f"visualize needs a model taking one batch of RGB images [B, 3, H, W]; {_label(model)} takes {shapes}")
    if loaded is not None and loaded.preprocess is not None:
        preprocess = loaded.preprocess
    return _Sources(loaded, artifact, specs[0], preprocess)


def _label(model: str | LoadedModel) -> str:
    return model if isinstance(model, str) else model.source


def _images(data: Sequence[Path]) -> list[Path]:
    from attn_deploy.runtime.inputs import IMAGE_SUFFIXES

    if not data:
        raise InputError("give at least one image with --data")
    files: list[Path] = []
    for path in data:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"--data {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"--data {path}: no such file or folder")
    return files


def _grid(call_input: tuple[int, ...] | None, tokens: int, batch: int, images: int, image_hw: tuple[int, int], notes: list[str], name: str) -> TokenGrid | None:
    if call_input is not None and len(call_input) == 4:
        grid = known_grid((call_input[2], call_input[3]), image_hw, tokens)
        if grid is not None:
            return grid
    try:
        return infer_grid(tokens, image_hw, windows=max(1, batch // images))
    except InputError as e:
        notes.append(f"{name}: skipped, {e}")
        return None


def _sites(calls: list[AttentionCall] | None, artifact: Artifact | None, first_ort: dict[int, tuple[np.ndarray, np.ndarray]] | None,
           images: int, image_hw: tuple[int, int], notes: list[str]) -> list[Site | None]:
    """Every attention in graph order (None where no grid fits); names from the ONNX graph when there is one."""
    onnx_sites = artifact.sites if artifact is not None else None
    if calls is not None and onnx_sites is not None and len(calls) != len(onnx_sites):
        raise InputError(f"the PyTorch model made {len(calls)} attention calls and the ONNX model has {len(onnx_sites)} attention nodes; "
                         "give the ONNX model exported from this MODEL")
    count = len(calls) if calls is not None else len(onnx_sites or [])
    if not count:
        raise InputError("the model has no attention to visualize (no FusedAttention node or call)")
    sites: list[Site | None] = []
    for i in range(count):
        node = onnx_sites[i] if onnx_sites is not None else None
        if calls is not None:
            c = calls[i]
            assert c.q is not None and c.k is not None and c.v is not None
            b, h, nq, dk_known = c.q.shape
            dk: int | None = dk_known
            nk, dv, scale, module, shape = c.k.shape[2], c.v.shape[3], c.scale, c.module or None, c.module_input
        else:
            assert first_ort is not None and node is not None
            probs, out = first_ort[i]
            b, h, nq, dv = out.shape
            nk, dk, scale, module = probs.shape[-1], node.dk if isinstance(node.dk, int) else None, node.scale, None
            shape = _recorded_feature_map(artifact, i)
        name = node.name if node is not None else (module or f"attention{i}")
        grid = _grid(shape, nk, b, images, image_hw, notes, name)
        sites.append(None if grid is None else Site(i, name, module, b, h, nq, nk, dk, dv, scale, grid))
    return sites


def _recorded_feature_map(artifact: Artifact | None, index: int) -> tuple[int, ...] | None:
    """``(1, 1, h, w)`` for the feature map the graph (or the manifest, recorded at export) says K came from."""
    if artifact is None:
        return None
    found = artifact.sites[index].feature_map
    records = artifact.manifest.fused_attention
    grid = records[index].grid if index < len(records) else None
    if found is None and grid is not None:
        found = (grid["h"], grid["w"])
    return None if found is None else (1, 1, *found)


def _select(sites: list[Site | None], wanted: Sequence[str]) -> list[Site]:
    found = [s for s in sites if s is not None]
    if not wanted:
        if not found:
            raise InputError("no attention of this model lies on a grid over the image; see the notes above")
        return found
    chosen = []
    for w in wanted:
        match = [s for s in found if w in (s.name, s.module, str(s.index))]
        if not match:
            names = ", ".join(f"{s.index}: {s.name}" + (f" ({s.module})" if s.module else "") for s in found)
            raise InputError(f"--node {w!r} names no attention shown here; choose from {names}")
        chosen += [m for m in match if m not in chosen]
    return sorted(chosen, key=lambda s: s.index)


def _queries(site: Site, norms: np.ndarray, options: VisualizeOptions, scale: tuple[float, float], model_hw: tuple[int, int]) -> list[Query]:
    """``--query`` points (image pixels, scaled to the model input by ``scale``), else salient points."""
    if site.tokens != site.keys:
        return top_queries(norms, options.points)
    if options.queries:
        points = [(x * scale[0], y * scale[1]) for x, y in options.queries]
        return pixel_queries(site.grid, points, [f"query {x:g},{y:g}" for x, y in options.queries])
    return salient_queries(site.grid, norms, options.points, model_hw)


def _rollout_groups(sites: list[Site]) -> list[list[Site]]:
    """Runs of consecutive attentions over the same tokens (self-attention, no windows)."""
    groups: list[list[Site]] = []
    for s in sites:
        if s.tokens != s.keys or s.grid.window:
            continue
        if groups and groups[-1][-1].index == s.index - 1 and groups[-1][-1].tokens == s.tokens:
            groups[-1].append(s)
        else:
            groups.append([s])
    return [g for g in groups if len(g) > 1] or [g for g in groups]


def visualize(model: str | LoadedModel, data: Sequence[Path], output: Path, options: VisualizeOptions = VisualizeOptions()) -> VisualizeResult:
    """Compute, render and write the maps; ``InputError`` (nothing written) for bad input."""
    import torch

    from attn_deploy.artifact.fileio import scratch_beside
    from attn_deploy.runtime.inputs import image_feeds
    from attn_deploy.visualize import onnx_maps, rollout, torch_maps
    from attn_deploy.visualize.write import check_output, write_folder

    check_output(output)
    files = _images(data)
    sources = _open(model, options)
    spec = sources.spec
    model_hw = (spec.shape[2], spec.shape[3])
    notes: list[str] = []
    images: list[ImageMaps] = []
    chosen: list[Site] = []
    debug: DebugModel | None = None
    runner = None
    try:
        for n, path in enumerate(files):
            feeds = image_feeds(path, [spec], sources.preprocess)[0]
            from PIL import Image

            with Image.open(path) as img:
                size = img.size
            calls = None
            if sources.loaded is not None:
                calls = torch_maps.record_calls(sources.loaded.module, (torch.from_numpy(feeds[spec.name]),))
            first_ort = None
            if n == 0:
                if sources.artifact is not None and calls is None:  # ONNX only: every node's output, for the salient points
                    debug = onnx_maps.debug_model(sources.artifact, range(len(sources.artifact.sites)))
                    runner = debug.runner()
                    first_ort = onnx_maps.run_debug(debug, runner, feeds, {})
                sites = _sites(calls, sources.artifact, first_ort, spec.shape[0], model_hw, notes)
                chosen = _select(sites, options.nodes)
                if options.rollout:
                    for group in _rollout_groups(chosen):
                        rollout.check_size(group[-1].name, group[-1].tokens)
                if sources.artifact is not None and calls is not None:
                    debug = onnx_maps.debug_model(sources.artifact, [s.index for s in chosen])
                    runner = debug.runner()
            if calls is not None:
                norms = {s.index: torch_maps.output_norms(calls[s.index]) for s in chosen}
            else:  # ONNX only: the first image's run gave the outputs; later images need one
                assert debug is not None and runner is not None
                outputs = first_ort or onnx_maps.run_debug(debug, runner, feeds, {})
                norms = {s.index: np.linalg.norm(outputs[s.index][1], axis=-1).mean(axis=1) for s in chosen}
            scale = (model_hw[1] / size[0], model_hw[0] / size[1])
            maps = [SiteMaps(s, _queries(s, norms[s.index], options, scale, model_hw)) for s in chosen]
            if calls is not None:
                for m in maps:
                    m.torch = torch_maps.torch_rows(calls[m.site.index], [(q.window, q.token) for q in m.queries])
            if debug is not None and runner is not None:
                _ort_rows(maps, debug, runner, feeds)
            if options.rollout:
                _add_rollout(maps, calls, debug, runner, feeds, notes if n == 0 else [])
            images.append(ImageMaps(path, size, maps))
    finally:
        if runner is not None:
            runner.close()
    result = VisualizeResult(output, chosen, images, notes=notes)
    with scratch_beside(output):
        result.files = write_folder(result, model_hw, options)
    return result


def _ort_rows(maps: list[SiteMaps], debug: DebugModel, runner: OrtRunner, feeds: dict[str, np.ndarray]) -> None:
    """Set each map's ONNX Runtime rows: one run computing every query's row of every chosen node."""
    from attn_deploy.visualize import onnx_maps

    wanted = {m.site.index: sorted({q.token for q in m.queries}) for m in maps}
    got = onnx_maps.run_debug(debug, runner, feeds, wanted)
    for m in maps:
        probs, tokens = got[m.site.index][0], wanted[m.site.index]
        m.ort = np.stack([probs[q.window, :, tokens.index(q.token)] for q in m.queries], axis=1)


def _add_rollout(maps: list[SiteMaps], calls: list[AttentionCall] | None, debug: DebugModel | None, runner: OrtRunner | None,
                 feeds: dict[str, np.ndarray], notes: list[str]) -> None:
    """The rollout rows of each stack's last attention, for that attention's queries."""
    from attn_deploy.visualize import onnx_maps, rollout, torch_maps

    by_index = {m.site.index: m for m in maps}
    groups = _rollout_groups([m.site for m in maps])
    if not groups:
        notes.append("--rollout: no self-attention over the image's tokens without windows; nothing rolled out")
    for group in groups:
        full = list(range(group[0].tokens))
        if calls is not None:
            layers = [torch_maps.torch_rows(calls[s.index], [(0, t) for t in full]) for s in group]
        else:
            assert debug is not None and runner is not None
            got = onnx_maps.run_debug(debug, runner, feeds, {s.index: full for s in group})
            layers = [got[s.index][0][0] for s in group]
        rolled = rollout.rollout(layers)
        last = by_index[group[-1].index]
        last.rollout = np.stack([rolled[q.token] for q in last.queries])
        notes.append(f"rollout over {len(group)} attention(s) ending at {last.site.name}")
    return None


def output_name(path: Path, index: int) -> str:
    """A file-name stem for the ``index``-th image (its own stem, made safe)."""
    return f"{index:02d}_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(path.name)[0]) or "image")
