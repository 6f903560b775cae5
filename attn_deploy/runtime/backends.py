"""The backend registry: for torch, ort and trt, what each runs, whether it can run here, its
precision rule and its batching rule. ``plan_runners`` turns SOURCE and ARTIFACTs into the runners
of a ``check``/``bench`` invocation; a backend that cannot run here becomes a ``Skipped`` with the
reason, never a silent omission.

A backend's ``name`` is the one name it has everywhere: ``--backends``, labels (``ort:model.onnx``)
and reports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from attn_deploy import defaults
from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.fileio import not_a_file
from attn_deploy.artifact.graph import dims_of, graph_inputs
from attn_deploy.artifact.io import ENGINE_SUFFIXES, is_engine_path, is_onnx_path
from attn_deploy.errors import InputError
from attn_deploy.runtime.base import Runner
from attn_deploy.runtime.precision import PrecisionChoice, artifact_precision, engine_precision

if TYPE_CHECKING:
    from attn_deploy.export.loading import LoadedModel

#: What a backend runs: a PyTorch model, an ONNX Artifact, a serialized engine file, or a served model.
Kind = Literal["pytorch", "onnx", "engine", "endpoint"]


@dataclass
class Target:
    """One model a backend can run; ``name`` is how labels and reports call it (a MODEL spec or a path)."""

    kind: Kind
    name: str
    artifact: Artifact | None = None
    engine: Path | None = None
    #: Loads the PyTorch model on first call, then returns the same one.
    model: Callable[[], LoadedModel] | None = None
    #: A Triton endpoint: (URL, model name).
    endpoint: tuple[str, str] | None = None


@dataclass(frozen=True)
class Skipped:
    label: str
    reason: str


@dataclass(frozen=True)
class Backend:
    """What the rest of the package knows about one backend (see ``REGISTRY``)."""

    name: str
    runs: Kind
    #: Why it cannot run here (None: it can).
    unavailable: Callable[[], str | None]
    #: Why none of its kind is there to run (``{source}`` is SOURCE).
    missing: str
    #: The tolerance preset of a target (``check --precision auto``), with a note when it is not the obvious one.
    precision: Callable[[Target], PrecisionChoice]
    #: Why it cannot run ``target`` at batch size ``batch`` (None: it can).
    batch_limit: Callable[[Target, int], str | None]
    #: Makes a runner for ``target`` given the input and output names.
    make: Callable[[Target, Sequence[str], Sequence[str]], Runner]
    #: ``torch.cuda.max_memory_allocated`` sees its device allocations (only PyTorch's own).
    torch_allocates: bool = False


@dataclass
class Planned:
    """A runner to build lazily (loading a model can take seconds: the CLI shows progress)."""

    label: str
    backend: Backend
    target: Target

    def make(self, input_names: Sequence[str], output_names: Sequence[str]) -> Runner:
        return self.backend.make(self.target, input_names, output_names)

    @property
    def precision(self) -> PrecisionChoice:
        return self.backend.precision(self.target)


def _always() -> str | None:
    return None


def _ort_unavailable() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'attn-deploy[cpu]')"
    return None


def gpu_reason() -> str | None:
    """None if an NVIDIA GPU is usable, else why not."""
    from attn_deploy.runtime.gpu import gpu_available

    ok, why = gpu_available()
    return None if ok else f"{why}: engines build on the CPU with TensorRT-RTX but run only on a GPU"


def _triton_unavailable() -> str | None:
    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient is not installed (pip install 'attn-deploy[serve]')"
    return None


def _any_batch(target: Target, batch: int) -> str | None:
    return None


def _static_batch(target: Target, batch: int) -> str | None:
    """An ONNX input whose batch axis is a fixed number other than ``batch`` cannot take it."""
    assert target.artifact is not None
    for vi in graph_inputs(target.artifact.proto):
        dims = dims_of(vi.type)
        if dims and isinstance(dims[0], int) and dims[0] != batch:
            return f"batch {batch}: {vi.name} has a static batch of {dims[0]} (export with --dynamic 0)"
    return None


def _torch_precision(target: Target) -> PrecisionChoice:
    return PrecisionChoice("fp32")


def _onnx_precision(target: Target) -> PrecisionChoice:
    assert target.artifact is not None
    return artifact_precision(target.artifact, target.name)


def _engine_precision(target: Target) -> PrecisionChoice:
    assert target.engine is not None
    return engine_precision(target.engine)


def _make_torch(target: Target, input_names: Sequence[str], output_names: Sequence[str]) -> Runner:
    from attn_deploy.runtime.torch_runner import TorchRunner

    assert target.model is not None
    return TorchRunner(target.model().module, input_names, output_names)


def _make_ort(target: Target, input_names: Sequence[str], output_names: Sequence[str]) -> Runner:
    from attn_deploy.runtime.ort_runner import OrtRunner

    assert target.artifact is not None
    return OrtRunner(target.artifact)


def _make_trt(target: Target, input_names: Sequence[str], output_names: Sequence[str]) -> Runner:
    from attn_deploy.runtime.trt_runner import TrtRunner

    assert target.engine is not None
    return TrtRunner(target.engine)


def _make_triton(target: Target, input_names: Sequence[str], output_names: Sequence[str]) -> Runner:
    from attn_deploy.runtime.triton_runner import TritonRunner

    assert target.endpoint is not None
    return TritonRunner(*target.endpoint, input_names, output_names)


REGISTRY: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", "pytorch", _always, "SOURCE {source} is not a PyTorch model", _torch_precision, _any_batch, _make_torch,
                torch_allocates=True),
        Backend("ort", "onnx", _ort_unavailable, "no .onnx model given", _onnx_precision, _static_batch, _make_ort),
        # An engine outside its optimisation profile fails in ``infer`` with the profile in the message.
        Backend("trt", "engine", gpu_reason, "no .engine artifact given (build one with attn-deploy build-trt)", _engine_precision,
                _any_batch, _make_trt),
        # A served model takes what its config.pbtxt allows; the server says so per request. Not a default backend.
        Backend("triton", "endpoint", _triton_unavailable, "no --triton-url and --triton-model given", _torch_precision, _any_batch, _make_triton),
    )
}
assert tuple(REGISTRY)[: len(defaults.BACKENDS)] == defaults.BACKENDS


def short_label(label: str) -> str:
    """``ort:/long/path/model.onnx`` -> ``ort:model.onnx`` for tables (reports keep the full label)."""
    backend, _, artifact = label.partition(":")
    return f"{backend}:{Path(artifact).name or artifact}" if artifact else backend


def parse_backends(text: str) -> tuple[str, ...]:
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    unknown = [b for b in names if b not in REGISTRY]
    if unknown or not names:
        raise InputError(f"--backends {text!r}: choose from {','.join(REGISTRY)}")
    return names


def validate_paths(paths: Sequence[str], source: str | None) -> None:
    """Every ARTIFACT path (and a file SOURCE) exists and has a suffix we can run."""
    for a in paths:
        if not (is_onnx_path(a) or is_engine_path(a)):
            raise InputError(f"artifact {a} is neither .onnx nor a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})")
    files = [*paths, *([source] if source is not None and (is_onnx_path(source) or is_engine_path(source)) else [])]
    for path in files:
        problem = not_a_file(Path(path))
        if problem is not None:
            raise InputError(f"{path}{'' if problem.startswith(':') else ' '}{problem}")


def plan_runners(targets: Sequence[Target], backends: Sequence[str]) -> tuple[list[Planned], list[Skipped]]:
    """Runners in registry order (the first is the reference) and the skipped backends with reasons.

    ``targets[0]`` is SOURCE.
    """
    planned: list[Planned] = []
    skipped: list[Skipped] = []
    for backend in REGISTRY.values():
        if backend.name not in backends:
            continue
        mine = [t for t in targets if t.kind == backend.runs]
        if not mine:
            skipped.append(Skipped(backend.name, backend.missing.format(source=targets[0].name)))
            continue
        reason = backend.unavailable()
        for target in mine:
            label = f"{backend.name}:{target.name}"
            if reason is not None:
                skipped.append(Skipped(label, reason))
            else:
                planned.append(Planned(label, backend, target))
    return planned, skipped
