"""Options several commands share, each written once (help and default), and their parsers.

Commands annotate parameters with these types (``arch: Arch = None``); help texts that differ per
command go through the small factories (``json_flag``, ``file_option``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from attn_deploy import defaults
from attn_deploy.errors import InputError
from attn_deploy.shapes import InputDecl, data_inputs, parse_inputs, parse_optional_named

if TYPE_CHECKING:
    from attn_deploy.check.detection import DetectionSelection
    from attn_deploy.runtime.workload import WorkloadOptions

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_bytes(text: str) -> int:
    """``"256M"`` -> ``268435456`` (K, M, G are powers of 1024; a bare number is bytes)."""
    t = text.strip().upper()
    number = t.rstrip("KMGB")
    try:
        value = float(number) * _UNITS[t[len(number):]]
    except (ValueError, KeyError):
        raise InputError(f"--max-attn-mem {text!r} is not a size like 256M, 1G or 1048576") from None
    if not (0 < value < float(1 << 60)):  # also refuses inf and nan
        raise InputError(f"--max-attn-mem {text!r}: the size must be a positive number of bytes, like 256M")
    return int(value)


def format_bytes(n: int) -> str:
    """The inverse of ``parse_bytes`` for whole units: ``268435456`` -> ``"256M"``."""
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def parse_axes(text: str) -> tuple[int, ...]:
    """``"2,3"`` -> ``(2, 3)``; ``""`` -> ``()``."""
    try:
        axes = tuple(int(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise InputError(f"--dynamic {text!r} is not a comma-separated list of axis indices, e.g. 0,2,3") from None
    if any(a < 0 for a in axes):
        raise InputError(f"--dynamic {text!r}: axes count from 0 (batch); negative axes are not accepted")
    return axes


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"0,1"`` -> ``(0.0, 1.0)``; None stays None."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--val-range {text!r} is not LOW,HIGH (e.g. 0,1)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"--val-range {text!r}: LOW must be below HIGH, both finite (e.g. 0,1)")
    return lo, hi


def parse_names(text: str | None, option: str) -> tuple[str, ...]:
    """``"input_ids,attention_mask"`` -> ``("input_ids", "attention_mask")``; None -> ``()``."""
    if text is None:
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise InputError(f"{option} {text!r} is not a comma-separated list of distinct names, e.g. boxes,scores,labels")
    return names


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,4"`` -> ``(1, 4)``; every batch size positive."""
    try:
        batches = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise InputError(f"--batch {text!r} is not a list of batch sizes like 1,4") from None
    if not batches or any(b <= 0 for b in batches):
        raise InputError(f"--batch {text!r}: batch sizes must be positive")
    return batches


def choose(value: str, choices: Sequence[str], option: str) -> str:
    """``value`` if it is one of ``choices``; else InputError (one line, exit 2) listing them."""
    if value not in choices:
        listed = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise InputError(f"{option} must be {listed}, not {value!r}")
    return value


def json_flag(what: str) -> Any:
    """``--json``: print ``what`` as JSON on stdout instead of the table."""
    return typer.Option("--json", help=what)


def file_option(name: str, what: str) -> Any:
    """An optional output file such as ``--report`` or ``--markdown``."""
    return typer.Option(name, help=what)


# --- loading a PyTorch MODEL (export, check, bench, quantize) ---
Arch = Annotated[str | None, typer.Option(help="zoo:NAME whose architecture a state-dict file fits.")]
UnsafeLoad = Annotated[bool, typer.Option("--unsafe-load", help="Allow unpickling a whole saved module, or the Python objects of a .pt2 (runs arbitrary code: trusted files only).")]

# --- running models (check, bench) ---
BACKENDS = ",".join(defaults.BACKENDS)
Backends = Annotated[str, typer.Option(help="Backends to run, from torch,ort,trt,triton; one that cannot run here is reported as skipped.")]
TritonUrl = Annotated[str | None, typer.Option("--triton-url", help=f"--backends triton: the server's HTTP endpoint (default {defaults.TRITON_URL}).")]
TritonModel = Annotated[str | None, typer.Option("--triton-model", help="--backends triton: the served model's name.")]
NamedInputShapes = Annotated[list[str] | None, typer.Option("--input-shape", help="[NAME:]1x3x224x224 for dynamic inputs; repeatable.")]
LowerFirst = Annotated[bool, typer.Option("--lower", help="Lower each .onnx ARTIFACT for ONNX Runtime first (as `attn-deploy lower --target ort`).")]
Seed = Annotated[int, typer.Option(help="Seed for the random inputs (a non-negative integer).")]

# --- describing and filling inputs (export, check, bench, quantize) ---
Inputs = Annotated[list[str] | None, typer.Option(
    "--input", help="An input as [NAME:]SHAPE[:DTYPE], e.g. input_ids:1x128:int64 (no DTYPE: a .pt2's own, else float32), "
                    "or an .npz of example inputs (names, shapes and dtypes from its arrays); repeat per input.")]
ValRange = Annotated[str | None, typer.Option(
    "--val-range", help="Random float inputs uniform in LOW,HIGH. Default: images (a 3-channel NCHW input) in [0,1] "
                        "(a zoo model's own range if it has one), other floats N(0,1); masks are ones, token ids "
                        "below the embedding's size (--vocab).")]
Data = Annotated[Path | None, typer.Option(
    "--data", help="Real inputs: an .npz (arrays named like the inputs), a .npy (a one-input model's array), an image, or a folder of images "
                   "(RGB in [0,1], normalised per the manifest).")]
AllowNonfinite = Annotated[bool, typer.Option("--allow-nonfinite", help="Run --data that holds NaN or Inf (refused by default: exit 2).")]
Vocab = Annotated[int | None, typer.Option(
    "--vocab", min=1, help="Random integer inputs (token ids) are drawn below this. Default: the row count of the "
                           "embedding table the input indexes in the graph (else 0/1); masks are ones.")]
# --- lowering (lower, inspect) ---
MAX_ATTN_MEM = format_bytes(defaults.MAX_ATTN_MEM)


def max_attn_mem_option(what: str) -> Any:
    """``--max-attn-mem SIZE`` (parse with ``parse_bytes``)."""
    return typer.Option("--max-attn-mem", help=what)


def input_decls(inputs: list[str] | None, input_shapes: list[str] | None) -> list[InputDecl]:
    """``--input`` and ``--input-shape`` (float32) as one list, in the order given."""
    return parse_inputs(inputs or []) + [InputDecl(name, shape) for name, shape in parse_optional_named(input_shapes or []).items()]


def workload(
    backends: str, input_shapes: list[str] | None, arch: str | None, unsafe_load: bool, lower: bool,
    inputs: list[str] | None = None, data: Path | None = None, triton_url: str | None = None, triton_model: str | None = None,
) -> WorkloadOptions:
    """What ``check`` and ``bench`` run: backends, inputs (``--input``, ``--input-shape``, else a ``--data``
    .npz's arrays), how to load SOURCE, ``--lower``, a Triton endpoint."""
    from attn_deploy.runtime.backends import parse_backends
    from attn_deploy.runtime.workload import WorkloadOptions, ort_lowering

    decls = input_decls(inputs, input_shapes) or data_inputs(data)
    if len(decls) > 1 and not all(d.name for d in decls):
        raise InputError("several inputs: name each one, e.g. --input input_ids:1x128:int64 --input attention_mask:1x128:int64")
    return WorkloadOptions(
        parse_backends(backends),
        {d.name: d.shape for d in decls},
        arch,
        unsafe_load,
        transform=ort_lowering() if lower else None,
        input_dtypes={d.name: d.dtype for d in decls if d.dtype},
        triton_url=triton_url,
        triton_model=triton_model,
    )


def detection_selection(score_threshold: float | None, max_detections: int | None) -> DetectionSelection | None:
    """``--score-threshold``/``--max-detections`` as a selection; None when neither was given."""
    from attn_deploy.check.detection import DetectionSelection

    if score_threshold is None and max_detections is None:
        return None
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise InputError(f"--score-threshold must be between 0 and 1, got {score_threshold}")
    if max_detections is not None and max_detections < 1:
        raise InputError(f"--max-detections must be at least 1, got {max_detections}")
    return DetectionSelection(score_threshold or 0.0, max_detections)
