"""Which runners a ``check``/``bench`` invocation gets, and why the others are skipped.

SOURCE is the reference: a PyTorch MODEL (anything ``export`` accepts) or an .onnx file.
ARTIFACTs are .onnx files (ONNX Runtime) and .engine/.plan files (TensorRT). A backend that
cannot run here becomes a ``Skipped`` with the reason, never a silent omission.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attn_deploy.errors import InputError
from attn_deploy.runtime.base import Runner

BACKENDS = ("torch", "ort", "trt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class Skipped:
    label: str
    reason: str


@dataclass
class Planned:
    """A runner to build lazily (loading a model can take seconds: the CLI shows progress)."""

    label: str
    backend: str
    artifact: str
    make: Callable[[], Runner]


def short_label(label: str) -> str:
    """``ort:/long/path/model.onnx`` -> ``ort:model.onnx`` for tables (reports keep the full label)."""
    backend, _, artifact = label.partition(":")
    return f"{backend}:{Path(artifact).name or artifact}" if artifact else backend


def parse_backends(text: str) -> tuple[str, ...]:
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise InputError(f"--backends {text!r}: choose from {','.join(BACKENDS)}")
    return names


def is_onnx(path: str) -> bool:
    return path.endswith(".onnx")


def is_engine(path: str) -> bool:
    return path.endswith(ENGINE_SUFFIXES)


def validate_artifacts(source: str, artifacts: list[str]) -> None:
    """Every ARTIFACT (and a file SOURCE) exists and has a suffix we can run."""
    for a in artifacts:
        if not (is_onnx(a) or is_engine(a)):
            raise InputError(f"artifact {a} is neither .onnx nor a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})")
    for path in [*artifacts, *([source] if is_onnx(source) or is_engine(source) else [])]:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such file")


def gpu_reason() -> str | None:
    """None if an NVIDIA GPU is usable, else why not."""
    from attn_deploy.runtime.gpu import gpu_available

    ok, why = gpu_available()
    return None if ok else f"{why}: engines build on the CPU with TensorRT-RTX but run only on a GPU"


def _trt_runner(path: str) -> Runner:
    from attn_deploy.runtime.trt_runner import TrtRunner

    return TrtRunner(path)


def plan_runners(
    source: str,
    artifacts: list[str],
    backends: tuple[str, ...],
    make_torch: Callable[[], Runner],
    make_ort: Callable[[str], Runner],
) -> tuple[list[Planned], list[Skipped]]:
    """Runners in order (the first is the reference) and the skipped backends with reasons."""
    validate_artifacts(source, artifacts)
    planned: list[Planned] = []
    skipped: list[Skipped] = []
    source_is_torch = not (is_onnx(source) or is_engine(source))
    if "torch" in backends:
        if source_is_torch:
            planned.append(Planned(f"torch:{source}", "torch", source, make_torch))
        else:
            skipped.append(Skipped("torch", f"SOURCE {source} is not a PyTorch model"))
    if "ort" in backends:
        onnx_files = ([] if source_is_torch else [source] if is_onnx(source) else []) + [a for a in artifacts if is_onnx(a)]
        if importlib.util.find_spec("onnxruntime") is None:
            skipped.extend(Skipped(f"ort:{f}", "onnxruntime is not installed (pip install 'attn-deploy[cpu]')") for f in onnx_files)
        else:
            planned.extend(Planned(f"ort:{f}", "ort", f, (lambda f=f: make_ort(f))) for f in onnx_files)
    engines = [a for a in artifacts if is_engine(a)] + ([source] if is_engine(source) else [])
    if "trt" in backends:
        reason = gpu_reason()
        if not engines:
            skipped.append(Skipped("trt", "no .engine artifact given (build one with attn-deploy build-trt)"))
        for engine in engines:
            if reason is not None:
                skipped.append(Skipped(f"trt:{engine}", reason))
            else:
                planned.append(Planned(f"trt:{engine}", "trt", engine, (lambda e=engine: _trt_runner(e))))
    return planned, skipped
