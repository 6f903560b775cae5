"""Pick TensorRT or TensorRT-RTX, imported lazily so nothing else needs either installed.

Polygraphy's TensorRT loaders import ``tensorrt`` or ``tensorrt_rtx`` when
``polygraphy.backend.trt`` is first imported, according to ``polygraphy.config.USE_TENSORRT_RTX``;
so the choice is made before that import and is fixed for the process.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from types import ModuleType

from attn_deploy.errors import AttnDeployError, InputError, first_line

RUNTIMES: tuple[str, ...] = ("auto", "tensorrt", "tensorrt-rtx")
_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
_INSTALL = {
    "tensorrt": "pip install tensorrt (needs NVIDIA's download host)",
    "tensorrt-rtx": "pip install tensorrt-rtx-cu13 (or pip install 'attn-deploy[trt]')",
}


@dataclass(frozen=True)
class TrtBackend:
    """An imported TensorRT flavour: ``name`` is ``tensorrt`` or ``tensorrt-rtx``."""

    name: str
    trt: ModuleType

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt-rtx"

    @property
    def version(self) -> str:
        return str(self.trt.__version__)

    def versions(self) -> dict[str, str]:
        out = {self.name: self.version}
        try:
            out["polygraphy"] = importlib.metadata.version("polygraphy")
        except importlib.metadata.PackageNotFoundError:
            pass
        return out


def _interruption(error: BaseException) -> BaseException | None:
    """The ``SystemExit`` or ``KeyboardInterrupt`` (SIGTERM, Ctrl-C) ``error`` was raised from, if any.

    A signal handler that raises while a C extension initialises comes back as ``ImportError:
    initialization failed`` (pybind11), the interruption as its cause.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if not isinstance(current, Exception):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _try_import(name: str) -> tuple[ModuleType | None, str]:
    try:
        module = importlib.import_module(_MODULES[name])
    except Exception as e:  # noqa: BLE001 - a stub wheel raises anything on import
        interrupted = _interruption(e)
        if interrupted is not None:  # killed while importing: not a broken install
            raise interrupted from None
        return None, f"{type(e).__name__}: {first_line(e)}"
    if not hasattr(module, "Builder"):  # NVIDIA's PyPI stub installs a module with no bindings
        return None, "the installed package has no TensorRT bindings (a download stub?)"
    return module, ""


_selected: TrtBackend | None = None


def select_backend(choice: str = "auto") -> TrtBackend:
    """Import the chosen TensorRT flavour and point Polygraphy at it.

    ``auto``: TensorRT if it imports, else TensorRT-RTX. InputError if none is usable; one flavour
    per process (Polygraphy's loaders bind to the first).
    """
    global _selected
    if choice not in RUNTIMES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {choice!r}")
    if _selected is not None and choice in ("auto", _selected.name):
        return _selected
    if _selected is not None:
        raise AttnDeployError(f"this process already uses {_selected.name}; run {choice} in a separate process")
    order = ["tensorrt", "tensorrt-rtx"] if choice == "auto" else [choice]
    reasons = []
    for name in order:
        module, why = _try_import(name)
        if module is None:
            reasons.append(f"{name}: {why}")
            continue
        from polygraphy import config as polygraphy_config

        wants_rtx = name == "tensorrt-rtx"
        loaded = sys.modules.get("polygraphy.backend.trt.loader")
        if loaded is not None and polygraphy_config.USE_TENSORRT_RTX != wants_rtx:
            raise AttnDeployError(f"Polygraphy's TensorRT backend was already imported for the other flavour; use {name} in a new process")
        polygraphy_config.USE_TENSORRT_RTX = wants_rtx
        _selected = TrtBackend(name, module)
        return _selected
    hints = "; ".join(_INSTALL[n] for n in order)
    raise InputError(f"no usable TensorRT ({'; '.join(reasons)}); install one: {hints}")
