"""Load plugin libraries and find the FusedAttention plugin creator in TensorRT's registry."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_deploy.engine.backend import TrtBackend
from attn_deploy.errors import InputError
from attn_deploy.ops.contract import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION


@dataclass
class PluginState:
    """Libraries loaded (in order), creators they added, and whether FusedAttention's is registered."""

    libraries: list[str] = field(default_factory=list)
    creators_added: list[str] = field(default_factory=list)
    fused_attention: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "libraries": self.libraries,
            "creators_added": self.creators_added,
            "fused_attention_creator": f"{PLUGIN_NAMESPACE}::{OP_TYPE} v{PLUGIN_VERSION}" if self.fused_attention else None,
        }


def _creator_names(registry: Any) -> set[str]:
    return {f"{c.plugin_namespace}::{c.name} v{c.plugin_version}" for c in registry.all_creators}


def find_creator(backend: TrtBackend, name: str = OP_TYPE, version: str = PLUGIN_VERSION, namespace: str = PLUGIN_NAMESPACE) -> Any:
    """The registered creator for (name, version, namespace), or None."""
    return backend.trt.get_plugin_registry().get_creator(name, version, namespace)


def load_plugins(backend: TrtBackend, paths: Sequence[str | Path]) -> PluginState:
    """Load each library; with any given, FusedAttention's creator must then be registered.

    A library registers its creators when loaded (``REGISTER_TENSORRT_PLUGIN``) or through the
    ``getCreators`` entry point TensorRT's ``load_library`` calls; both are tried.
    """
    state = PluginState()
    registry = backend.trt.get_plugin_registry()
    before = _creator_names(registry)
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise InputError(f"--plugin {path}: no such file; build the plugin library first (see plugins/README.md)")
        try:
            ctypes.CDLL(str(path.resolve()), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise InputError(f"--plugin {path} cannot be loaded: {e}") from None
        if find_creator(backend) is None and hasattr(registry, "load_library"):
            # A library without getCreators raises anything; the check below reports it.
            with contextlib.suppress(Exception):
                registry.load_library(str(path.resolve()))
        state.libraries.append(str(path))
    state.creators_added = sorted(_creator_names(registry) - before)
    state.fused_attention = find_creator(backend) is not None
    if paths and not state.fused_attention:
        added = ", ".join(state.creators_added) or "none"
        raise InputError(
            f"plugin not found: no creator named {OP_TYPE!r}, namespace {PLUGIN_NAMESPACE!r}, version {PLUGIN_VERSION!r} "
            f"is registered after loading {', '.join(state.libraries)} (creators they added: {added}); "
            "pass the attn_deploy plugin library, or drop --plugin to build FusedAttention from its body"
        )
    return state
