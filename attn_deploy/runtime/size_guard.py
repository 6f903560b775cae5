"""The size guard: estimate a run's memory before running, refuse what cannot fit, warn near the limit.

Two estimates, both taken without allocating the model's activations:

* PyTorch eager (``eager_peak_bytes``): the model runs once on fake tensors (``FakeTensorMode``) and
  the bytes of live tensors are tracked op by op; the peak, plus the parameters, is the estimate.
  A model whose attention materialises its score matrix shows it there; the FusedAttention op's
  tiled kernel does not (it holds one ``EAGER_TILE_ELEMENTS`` tile at a time).
* ONNX Runtime (``ort_peak_bytes``): from the manifest's attention sites. A FusedAttention body is
  blocked (``ops/contract.py``'s ``block_rows``), so it holds Q, K, V, O and a few score blocks, never
  the whole ``B·H·Nq·Nk`` matrix; lowered nodes are bounded by ``--max-attn-mem``.

``guard`` compares an estimate with the memory available now (``/proc/meminfo``'s MemAvailable).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from attn_deploy import defaults
from attn_deploy.artifact.manifest import SiteRecord
from attn_deploy.artifact.sites import AttentionNode, AttentionSite
from attn_deploy.errors import InputError
from attn_deploy.fuse.render import format_bytes
from attn_deploy.lower.choice import BLOCKED_PEAK_BLOCKS
from attn_deploy.ops.contract import (
    DEFAULT_SCORE_BLOCK_ELEMENTS,
    DOMAIN,
    EAGER_TILE_ELEMENTS,
    OP_TYPE,
    block_rows,
)

if TYPE_CHECKING:
    from torch import nn

    from attn_deploy.artifact.artifact import Artifact

Warn = Callable[[str], None]
Site = TypeVar("Site", bound=AttentionNode)
_FLOAT = 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now; None when the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _ints(*dims: object) -> list[int] | None:
    return [d for d in dims if isinstance(d, int)] if all(isinstance(d, int) for d in dims) else None


def materialised_bytes(site: AttentionNode) -> int | None:
    """The float32 score matrix ``B·H·Nq·Nk`` of ``site`` (None when a dimension is dynamic)."""
    dims = _ints(site.B, site.H, site.Nq, site.Nk)
    return None if dims is None else _FLOAT * dims[0] * dims[1] * dims[2] * dims[3]


def _runs_body(site: AttentionNode) -> bool:
    """The site runs the FusedAttention body (not lowered)."""
    if isinstance(site, SiteRecord):
        return site.implementation == "body"
    return isinstance(site, AttentionSite) and site.op_type == OP_TYPE and site.domain == DOMAIN


def body_bytes(site: AttentionNode) -> int | None:
    """What ``site`` holds at once in ONNX Runtime: Q, K, V and O plus a few query-blocked score
    blocks (the FusedAttention body), or ``--max-attn-mem`` (a lowered node)."""
    dims = _ints(site.B, site.H, site.Nq, site.Nk, site.dk, site.dv)
    if dims is None:
        return None
    b, h, nq, nk, dk, dv = dims
    tensors = _FLOAT * b * h * (nq * dk + nk * dk + nk * dv + nq * dv)
    if _runs_body(site):
        rows = min(nq, block_rows(b * h, nk, DEFAULT_SCORE_BLOCK_ELEMENTS))
        return tensors + BLOCKED_PEAK_BLOCKS * _FLOAT * b * h * rows * nk  # ORT's measured peak: a few blocks
    materialised = _FLOAT * b * h * nq * nk
    return tensors + min(defaults.MAX_ATTN_MEM, 2 * materialised)  # lowered: within --max-attn-mem by construction


def largest_site(sites: Sequence[Site], size: Callable[[Site], int | None]) -> tuple[Site, int] | None:
    """The site with the largest ``size`` (sites run one after another), None when no size is known."""
    sized = [(s, n) for s in sites if (n := size(s)) is not None]
    return max(sized, key=lambda pair: pair[1]) if sized else None


def ort_peak_bytes(artifact: Artifact) -> int | None:
    """ONNX Runtime's memory for ``artifact``'s largest attention node; None when no site has static shapes.

    Read from the manifest (no shape inference): a file's own one only when its sha256 matches.
    """
    largest = largest_site(artifact.manifest.fused_attention, body_bytes)
    return None if largest is None else largest[1]


class _LiveBytes:
    """Bytes of the fake tensors alive now, and the peak, fed by a dispatch mode."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, tensor: Any) -> None:
        if tensor in self._seen or tensor._is_view():
            return
        size = int(tensor.numel()) * int(tensor.element_size())
        self._seen.add(tensor)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._free, size)

    def _free(self, size: int) -> None:
        self.live -= size


@contextlib.contextmanager
def _state_kept(module: nn.Module) -> Iterator[None]:
    """Whatever a forward stores on its modules (caches, counters) is put back: no fake tensor stays behind."""
    saved = [(m, dict(vars(m)), dict(m._buffers), dict(m._parameters)) for m in module.modules()]
    try:
        yield
    finally:
        for m, attrs, buffers, params in saved:
            vars(m).clear()
            vars(m).update(attrs)
            m._buffers.clear()
            m._buffers.update(buffers)
            m._parameters.clear()
            m._parameters.update(params)


def eager_peak_bytes(module: nn.Module, shapes: Sequence[Sequence[int]]) -> int | None:
    """Peak memory of one eager ``module(*inputs)`` at ``shapes`` (float32), measured on fake tensors.

    Parameters count in full; a FusedAttention call adds its kernel's tile. None when the model
    cannot run on fake tensors (the estimate is then unknown, not zero).
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    counter = _LiveBytes()
    tile = _FLOAT * EAGER_TILE_ELEMENTS

    class Track(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for leaf in tree_leaves(out):
                if isinstance(leaf, torch.Tensor):
                    counter.add(leaf)
            if "fused_attention" in str(func):
                counter.peak = max(counter.peak, counter.live + tile)
            return out

    params = sum(int(p.numel()) * int(p.element_size()) for p in module.parameters())
    params += sum(int(b.numel()) * int(b.element_size()) for b in module.buffers())
    try:
        with _state_kept(module), torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
            inputs = [torch.empty(tuple(s)) for s in shapes]
            with Track():  # type: ignore[no-untyped-call]
                module(*inputs)
    except Exception:  # noqa: BLE001 - some models do not trace on fake tensors: no estimate, no guard
        return None
    return params + counter.peak


def guard(estimate: int | None, what: str, way_out: str, warn: Warn) -> None:
    """``InputError`` when ``estimate`` bytes exceed the memory available; ``warn`` above the warning fraction."""
    available = available_memory()
    if estimate is None or available is None:
        return
    said = f"{what} needs about {format_bytes(estimate)} and this machine has {format_bytes(available)} available"
    if estimate > available:
        raise InputError(f"{said}; {way_out}")
    if estimate > defaults.MEMORY_WARN_FRACTION * available:
        warn(f"{said}; {way_out} if it runs out")
