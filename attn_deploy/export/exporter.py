"""``export_model``: a loaded model -> ``OUT.onnx`` + ``OUT.json``, atomically and reproducibly."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx
import torch

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.finalize import finalize
from attn_deploy.artifact.graph import default_opset, fused_attention_nodes
from attn_deploy.artifact.io import save_artifact
from attn_deploy.artifact.manifest import AttentionFinding, SiteRecord
from attn_deploy.captured import captured_output
from attn_deploy.check.detection import DETECTION_OUTPUTS
from attn_deploy.errors import AttnDeployError, InputError, first_line
from attn_deploy.export.attention import find_attention, refuse_plain
from attn_deploy.export.detector import DetectionLayout, detection_layout, detection_selection
from attn_deploy.export.gelu_order import gelu_in_fusable_order
from attn_deploy.export.loading import LoadedModel
from attn_deploy.export.routing import attention_left_plain, attention_routed_through_op
from attn_deploy.export.row_scatter import rows_to_scatter_nd
from attn_deploy.export.scopes import module_scopes
from attn_deploy.ops.symbolic import (
    dynamo_translation_table,
    register_torchscript_symbolic,
)
from attn_deploy.shapes import InputDecl
from attn_deploy.zoo.registry import Shape

log = logging.getLogger(__name__)

Exporter = Literal["auto", "dynamo", "torchscript"]
#: Accepted by ONNX Runtime 1.2x/1.3x and TensorRT 10.x; also the dynamo exporter's native opset,
#: so no version conversion (which would inline our function) happens.
DEFAULT_OPSET = defaults.OPSET
MIN_OPSET = defaults.MIN_OPSET


@dataclass(frozen=True)
class ExportOptions:
    input_shapes: tuple[Shape, ...] = ()
    #: Axis indices made dynamic on every input (0 = batch, 2,3 = height, width for images).
    dynamic_axes: tuple[int, ...] = ()
    opset: int = DEFAULT_OPSET
    exporter: Exporter = "auto"
    #: Export attention as plain MatMul/Softmax/MatMul (what ``fuse`` then finds), not through the op.
    no_fuse: bool = False
    #: Export only this named part (``backbone`` of a zoo detector; see export/submodule.py).
    submodule: str | None = None
    #: NumPy dtype per input, in order (``--input input_ids:1x128:int64``); default: the model's, else float32.
    input_dtypes: tuple[str | None, ...] = ()
    #: Graph input and output names (``--input-names`` / ``--output-names``); default: the model's.
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    #: An attention left as plain MatMul/Softmax/MatMul is an error, not a warning.
    strict: bool = False


def options_for_inputs(decls: Sequence[InputDecl], loaded: LoadedModel) -> ExportOptions:
    """ExportOptions for inputs described with ``--input``: their shapes and dtypes, and their names
    when every input is named and the model names none of its own (a zoo model's names stay)."""
    names = tuple(d.name for d in decls if d.name)
    return ExportOptions(
        input_shapes=tuple(d.shape for d in decls),
        input_dtypes=tuple(d.dtype for d in decls),
        input_names=names if len(names) == len(decls) and not loaded.input_names else (),
    )


@dataclass
class ExportResult:
    artifact: Artifact
    exporter: str
    notes: list[str] = field(default_factory=list)
    onnx_path: Path | None = None
    manifest_path: Path | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as written to ``OUT.json``."""
        return self.artifact.manifest.to_json()

    @property
    def fused_attention_count(self) -> int:
        return len(self.artifact.manifest.fused_attention)

    @property
    def attention(self) -> list[AttentionFinding]:
        """Per attention: routed, fused or left plain (and why)."""
        return self.artifact.manifest.attention


def _check_shapes(loaded: LoadedModel, shapes: tuple[Shape, ...]) -> None:
    if not shapes:
        raise InputError(f"no input shape known for {loaded.source}; pass --input-shape, e.g. 1x3x224x224")
    known = loaded.input_shapes
    if known:
        if len(shapes) != len(known):
            raise InputError(f"{loaded.source} takes {len(known)} input(s), got {len(shapes)} --input-shape")
        for i, (got, want) in enumerate(zip(shapes, known)):
            if len(got) != len(want):
                want_s = "x".join(map(str, want))
                raise InputError(
                    f"--input-shape #{i + 1} has rank {len(got)}, but {loaded.source} takes rank {len(want)} (e.g. {want_s})"
                )


def _routing(loaded: LoadedModel, options: ExportOptions) -> contextlib.AbstractContextManager[Any]:
    return attention_left_plain(loaded.module) if options.no_fuse else attention_routed_through_op(loaded.module)


def _probe(loaded: LoadedModel, inputs: tuple[torch.Tensor, ...], options: ExportOptions) -> object:
    """Run once in PyTorch so a shape the model rejects is a usage error, not an exporter traceback; the output."""
    try:
        with torch.no_grad(), _routing(loaded, options):
            return loaded.module(*inputs)
    except Exception as e:  # noqa: BLE001 - any failure here is about the input we made
        shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs)
        first = first_line(e)
        raise InputError(f"{loaded.source} rejected an input of shape {shapes}: {first}; fix --input-shape") from None


def _described(loaded: LoadedModel, options: ExportOptions, count: int) -> LoadedModel:
    """``loaded`` with the input/output names and input dtypes that ``options`` give."""
    if options.input_names and len(options.input_names) != count:
        raise InputError(f"--input-names gives {len(options.input_names)} name(s) for {count} input(s)")
    own = loaded.input_dtypes if len(loaded.input_dtypes) == count else ("float32",) * count
    given = options.input_dtypes if len(options.input_dtypes) == count else (None,) * count
    return dataclasses.replace(
        loaded,
        input_names=options.input_names or loaded.input_names,
        output_names=options.output_names or loaded.output_names,
        input_dtypes=tuple(g or o for g, o in zip(given, own)),
    )


def _as_detector(loaded: LoadedModel, outputs: object) -> tuple[LoadedModel, DetectionLayout | None]:
    """A model that returns torchvision-style detections is exported as the zoo's detectors are (TorchScript,
    a dynamic number of detections), its outputs named by role unless ``--output-names`` names them."""
    layout = detection_layout(outputs)
    if layout is None:
        return loaded, None
    names = layout.output_names(loaded.output_names)
    return dataclasses.replace(loaded, is_detector=True, preferred_exporter="torchscript", output_names=names), layout


def _detection_outputs(loaded: LoadedModel, layout: DetectionLayout | None, model: onnx.ModelProto, notes: list[str]) -> dict[str, str] | None:
    """``{role: graph output}`` for the manifest: from the eager output's layout, else (zoo) by output name."""
    if layout is not None:
        found = layout.by_name(model)
        if found is None:
            notes.append(f"the model returns detections but the graph has {len(model.graph.output)} outputs for its "
                         f"{layout.count} tensors; check and quantize compare its outputs as plain tensors")
        return found
    names = [o.name for o in model.graph.output]
    return {role: role for role in DETECTION_OUTPUTS} if loaded.is_detector and all(r in names for r in DETECTION_OUTPUTS) else None


def _names(loaded: LoadedModel, count: int) -> list[str]:
    names = list(loaded.input_names)
    return names if len(names) == count else [f"input_{i}" if count > 1 else "input" for i in range(count)]


def _export_dynamo(loaded: LoadedModel, inputs: tuple[torch.Tensor, ...], options: ExportOptions) -> onnx.ModelProto:
    dynamic_shapes = None
    if options.dynamic_axes:
        dynamic_shapes = tuple({a: torch.export.Dim.AUTO for a in options.dynamic_axes} for _ in inputs)
    program = torch.onnx.export(
        loaded.module,
        inputs,
        dynamo=True,
        opset_version=options.opset,
        input_names=_names(loaded, len(inputs)),
        output_names=list(loaded.output_names) or None,
        dynamic_shapes=dynamic_shapes,
        custom_translation_table=dynamo_translation_table(),
        optimize=True,
        verbose=False,
    )
    if program is None:
        raise AttnDeployError("the dynamo exporter returned no program; try --exporter torchscript")
    return program.model_proto


def _export_torchscript(loaded: LoadedModel, inputs: tuple[torch.Tensor, ...], options: ExportOptions) -> onnx.ModelProto:
    register_torchscript_symbolic(options.opset)
    input_names = _names(loaded, len(inputs))
    output_names = list(loaded.output_names)
    dynamic_axes: dict[str, dict[int, str]] = {
        name: {a: f"{name}_dim{a}" for a in options.dynamic_axes} for name in input_names
    }
    if loaded.is_detector:  # the number of detections depends on the data
        dynamic_axes.update({name: {0: "detections"} for name in output_names})
    buffer = io.BytesIO()
    torch.onnx.export(
        loaded.module,
        inputs,
        buffer,  # type: ignore[arg-type]
        dynamo=False,
        opset_version=options.opset,
        input_names=input_names,
        output_names=output_names or None,
        dynamic_axes={k: v for k, v in dynamic_axes.items() if v} or None,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buffer.getvalue())


_EXPORTERS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _failure_reason(error: BaseException) -> str:
    """One clean line on why an exporter failed: the innermost cause (torch.onnx wraps torch.export's
    error in several paragraphs of advice), its type named, colour codes dropped."""
    inner, seen = error, {id(error)}
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        inner = nxt
        seen.add(id(nxt))
    line = _ANSI.sub("", first_line(inner))
    return line if inner is error else f"{type(inner).__name__}: {line}"


def _run_exporters(loaded: LoadedModel, inputs: tuple[torch.Tensor, ...], options: ExportOptions) -> tuple[onnx.ModelProto, str, list[str]]:
    if options.exporter == "auto":
        order = [loaded.preferred_exporter] + [e for e in _EXPORTERS if e != loaded.preferred_exporter]
    else:
        order = [options.exporter]
    notes: list[str] = []
    for name in order:
        try:
            # torch.export prints FX graphs and guard warnings (hundreds of KB) before it gives up
            with torch.no_grad(), _routing(loaded, options), warnings.catch_warnings(), captured_output() as printed:
                warnings.simplefilter("ignore")
                return _EXPORTERS[name](loaded, inputs, options), name, notes
        except Exception as e:  # noqa: BLE001 - exporters raise anything; try the next one or report
            notes.append(f"{name} exporter failed: {_failure_reason(e)[:300]}")
            log.info("%s exporter failed, %s", name, "trying the next" if name != order[-1] else "giving up")
            log.debug("%s exporter printed:\n%s", name, "\n".join(printed))
    raise AttnDeployError("export failed: " + "; ".join(notes) + ("; try --exporter torchscript" if options.exporter == "dynamo" else ""))


def _guard_memory(loaded: LoadedModel, shapes: tuple[Shape, ...], options: ExportOptions) -> list[str]:
    """Export runs the model once in PyTorch: refuse a shape whose run cannot fit in memory (estimated on fake tensors)."""
    from attn_deploy.runtime.size_guard import eager_peak_bytes, guard

    with _routing(loaded, options):
        estimate = eager_peak_bytes(loaded.module, shapes)
    warnings: list[str] = []
    shape_text = ", ".join("x".join(map(str, s)) for s in shapes)
    guard(estimate, f"export runs {loaded.source} once in PyTorch: at {shape_text} that",
          "export a smaller --input-shape (--dynamic makes axes free at run time)", warnings.append)
    return warnings


def _score_matrix_note(sites: list[SiteRecord]) -> list[str]:
    """A note when an attention node's score matrix, materialised, would not fit in this machine's memory."""
    from attn_deploy.fuse.render import format_bytes
    from attn_deploy.runtime.size_guard import available_memory, largest_site, materialised_bytes

    largest, available = largest_site(sites, materialised_bytes), available_memory()
    if largest is None or available is None or largest[1] <= defaults.MEMORY_WARN_FRACTION * available:
        return []
    site, size = largest
    return [
        f"attention {site.name} has a {format_bytes(size)} score matrix ({site.B}x{site.H}x{site.Nq}x{site.Nk} float32) and this "
        f"machine has {format_bytes(available)} available: run it only through blocked kernels (`attn-deploy lower`), "
        "never a runtime that materialises attention, or export a smaller --input-shape"
    ]


def export_artifact(loaded: LoadedModel, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``loaded`` to an in-memory Artifact; the same model and options give byte-identical ONNX."""
    if options.opset < MIN_OPSET:
        raise InputError(f"--opset {options.opset} is too old; use {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    if options.opset > onnx.defs.onnx_opset_version():
        raise InputError(f"--opset {options.opset} does not exist (onnx {onnx.__version__} knows up to {onnx.defs.onnx_opset_version()}); default {DEFAULT_OPSET}")
    if options.submodule:
        from attn_deploy.export.submodule import select_submodule

        loaded = select_submodule(loaded, options.submodule, options.input_shapes)
    shapes = options.input_shapes or loaded.input_shapes
    _check_shapes(loaded, shapes)
    ranks = [len(s) for s in shapes]
    outside = [a for a in options.dynamic_axes if any(a >= r for r in ranks)]
    if outside:
        raise InputError(f"--dynamic {','.join(map(str, outside))}: no such axis (the inputs have rank {', '.join(map(str, ranks))})")
    loaded = _described(loaded, options, len(shapes))
    size_notes = _guard_memory(loaded, shapes, options)
    inputs = loaded.example_inputs(shapes)
    layout = None
    if loaded.entry is None:
        loaded, layout = _as_detector(loaded, _probe(loaded, inputs, options))
    model, exporter, notes = _run_exporters(loaded, inputs, options)
    notes[:0] = size_notes
    scopes = module_scopes(model)  # before finalize drops the exporter's metadata
    model = finalize(model)
    model, scatters = rows_to_scatter_nd(model)
    if scatters:
        notes.append(f"{len(scatters)} whole-row scatter(s) (ScatterElements, as torchvision's MultiScaleRoIAlign writes them) "
                     "written as ScatterND, which ONNX Runtime runs as row copies; same results")
    model, gelus = gelu_in_fusable_order(model)
    if gelus:
        notes.append(f"{gelus} erf GELU(s) written as (x * (1 + erf(x / sqrt 2))) * 0.5, the order ONNX Runtime fuses into one Gelu kernel; same results")
    onnx.checker.check_model(model, full_check=True)
    if default_opset(model) != options.opset:
        notes.append(f"the {exporter} exporter wrote opset {default_opset(model)}, not the --opset {options.opset} asked for")
    findings: list[AttentionFinding] = []
    if not options.no_fuse:
        model, findings, note = find_attention(model, scopes)
        notes += [note] if note else []
        if options.strict:
            refuse_plain(findings)
    expected = loaded.expected_attention_blocks
    found = len(fused_attention_nodes(model))
    if options.no_fuse:
        if found:
            notes.append(f"--no-fuse kept {found} FusedAttention node(s): the model calls torch.ops.attn_deploy.fused_attention itself")
        expected = None
    if expected is not None and found != expected:
        raise AttnDeployError(f"export produced {found} FusedAttention nodes for {expected} attention blocks; please report this model")
    detection = _detection_outputs(loaded, layout, model, notes)
    artifact = Artifact.describe(
        model,
        source=loaded.source,
        exporter=exporter,
        source_sha256=loaded.source_sha256,
        export_input_shapes=[list(s) for s in shapes],
        export_dynamic_axes=list(options.dynamic_axes),
        preprocess=loaded.preprocess,
        stages=[f"export:{exporter}"],
        notes=list(notes),
        detection=detection,
        detection_selection=detection_selection(loaded.module) if detection else None,
        attention=findings,
    )
    size_note = _score_matrix_note(artifact.manifest.fused_attention)
    notes.extend(size_note)
    artifact.manifest.notes.extend(size_note)
    return ExportResult(artifact, exporter, notes)


def export_model(loaded: LoadedModel, out: str | Path, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``loaded`` to ``out`` (``.onnx``) and its manifest (``.json`` beside it), both or neither."""
    result = export_artifact(loaded, options)
    result.onnx_path, result.manifest_path = save_artifact(result.artifact, out)
    return result
