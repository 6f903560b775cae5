"""Tolerance presets per precision, per-output overrides, and precision detection.

An output passes when Polygraphy's ``SimpleCompareFunc`` accepts it under (atol, rtol,
check_error_stat) — abs OR rel within tolerance, as Polygraphy defines it — AND its cosine
similarity to the reference is at least ``min_cosine`` AND it has no more NaN/Inf than the
reference.

| preset | atol | rtol | error stat | min cosine | for |
|---|---|---|---|---|---|
| fp32 | 1e-4 | 1e-4 | elemwise | 0.99999 | exported / lowered fp32 models |
| fp16 | 1e-2 | 1e-2 | elemwise | 0.999 | fp16 ONNX models and engines |
| int8 | 5e-2 | 5e-2 | median | 0.99 | dynamically quantized models |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from attn_deploy.errors import InputError

ERROR_STATS = ("elemwise", "max", "mean", "median")


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    check_error_stat: str
    min_cosine: float


PRESETS: dict[str, Tolerance] = {
    "fp32": Tolerance(1e-4, 1e-4, "elemwise", 0.99999),
    "fp16": Tolerance(1e-2, 1e-2, "elemwise", 0.999),
    "int8": Tolerance(5e-2, 5e-2, "median", 0.99),
}

_INT8_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


@dataclass(frozen=True)
class ToleranceOverrides:
    """User settings: ``{"": default, "boxes": 0.5}`` style maps; empty means "use the preset"."""

    atol: dict[str, float]
    rtol: dict[str, float]
    check_error_stat: dict[str, str]
    min_cosine: float | None = None

    def for_output(self, name: str, preset: Tolerance) -> Tolerance:
        def pick(values: dict, default):  # noqa: ANN001, ANN202 - tiny local helper
            return values.get(name, values.get("", default))

        tol = replace(
            preset,
            atol=pick(self.atol, preset.atol),
            rtol=pick(self.rtol, preset.rtol),
            check_error_stat=pick(self.check_error_stat, preset.check_error_stat),
        )
        return replace(tol, min_cosine=self.min_cosine) if self.min_cosine is not None else tol


def parse_per_output(values: list[str], option: str, cast: type = float) -> dict[str, object]:
    """``["1e-3", "boxes=0.5"]`` -> ``{"": 1e-3, "boxes": 0.5}``."""
    parsed: dict[str, object] = {}
    for item in values:
        name, _, value = item.rpartition("=")
        try:
            parsed[name] = cast(value)
        except ValueError:
            raise InputError(f"{option} {item!r}: expected VALUE or OUTPUT=VALUE") from None
        if option == "--check-error-stat" and parsed[name] not in ERROR_STATS:
            raise InputError(f"{option} {item!r}: choose one of {', '.join(ERROR_STATS)}")
    return parsed


def detect_precision(path: str | Path) -> str:
    """The precision preset for an artifact: its manifest's (engine: its build report's), else read off the graph.

    A graph with integer matmul/conv ops is ``int8``, one holding float16 tensors ``fp16``, else ``fp32``.
    """
    from attn_deploy.artifact.io import engine_report_path, is_onnx_path, load_onnx, read_json, read_manifest

    if not is_onnx_path(path):
        report = read_json(engine_report_path(path))
        return "fp16" if isinstance(report, dict) and report.get("precision") == "float16" else "fp32"
    manifest = read_manifest(path)
    if manifest is not None:
        return manifest.precision
    model = load_onnx(path)
    if any(n.op_type in _INT8_OPS for n in model.graph.node):
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == fp16 for i in model.graph.initializer) or any(
        v.type.tensor_type.elem_type == fp16 for v in (*model.graph.input, *model.graph.value_info)
    ):
        return "fp16"
    return "fp32"
