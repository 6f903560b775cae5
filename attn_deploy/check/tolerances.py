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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.manifest import Precision
from attn_deploy.errors import InputError

T = TypeVar("T")
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


@dataclass(frozen=True)
class ToleranceOverrides:
    """User settings: ``{"": default, "boxes": 0.5}`` style maps; empty means "use the preset"."""

    atol: dict[str, float]
    rtol: dict[str, float]
    check_error_stat: dict[str, str]
    min_cosine: float | None = None

    def for_output(self, name: str, preset: Tolerance) -> Tolerance:
        def pick(values: Mapping[str, T], default: T) -> T:
            return values.get(name, values.get("", default))

        tol = replace(
            preset,
            atol=pick(self.atol, preset.atol),
            rtol=pick(self.rtol, preset.rtol),
            check_error_stat=pick(self.check_error_stat, preset.check_error_stat),
        )
        return replace(tol, min_cosine=self.min_cosine) if self.min_cosine is not None else tol


def parse_per_output(values: list[str], option: str, cast: Callable[[str], object] = float) -> dict[str, object]:
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


def detect_precision(model: Artifact | str | Path) -> Precision:
    """The precision preset of an Artifact, an .onnx file or an engine file (see ``runtime/precision.py``):
    what the stage that made it recorded (an engine's: its build report), else strict fp32."""
    from attn_deploy.artifact.io import is_engine_path, load_artifact
    from attn_deploy.runtime.precision import artifact_precision, engine_precision

    if isinstance(model, Artifact):
        return artifact_precision(model).precision
    if is_engine_path(model):
        return engine_precision(model).precision
    return artifact_precision(load_artifact(model)).precision


def tolerances_for(output_names: list[str], precision: str, overrides: ToleranceOverrides) -> dict[str, Tolerance]:
    """Each output's tolerance: the preset of ``precision`` under the user's overrides."""
    preset = PRESETS[precision]
    return {n: overrides.for_output(n, preset) for n in output_names}
