"""Turn a MODEL argument into an ``nn.Module`` plus what export needs to know about it.

MODEL forms: ``zoo:NAME``; ``package.module:factory``; a TorchScript archive; a ``torch.export``
``.pt2``; a ``torch.save``d state dict (with ``arch="zoo:NAME"``); a ``torch.save``d whole module
(only with ``unsafe_load=True``: unpickling runs arbitrary code).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from attn_deploy.artifact.fileio import not_a_file, sha256_file
from attn_deploy.errors import InputError, first_line
from attn_deploy.zoo.registry import Shape, ZooEntry, get_entry

ZOO_PREFIX = "zoo:"
_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # package.module:factory


@dataclass
class LoadedModel:
    """A model ready to trace, with defaults taken from its zoo entry or its archive."""

    module: nn.Module
    source: str
    input_shapes: tuple[Shape, ...] = ()
    input_names: tuple[str, ...] = ()
    #: NumPy dtype name per input (``int64`` token ids, ...); float32 where missing.
    input_dtypes: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    preferred_exporter: str = "dynamo"
    expected_attention_blocks: int | None = None
    is_detector: bool = False
    source_sha256: str | None = None
    preprocess: dict[str, object] | None = None
    entry: ZooEntry | None = field(default=None, repr=False)

    @property
    def embedding_rows(self) -> int | None:
        """Rows of the model's first ``nn.Embedding`` (its token ids lie below), if it has one."""
        return next((m.num_embeddings for m in self.module.modules() if isinstance(m, nn.Embedding)), None)

    def example_inputs(self, shapes: tuple[Shape, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Inputs to trace with: the zoo entry's, else ``check``'s random inputs (``runtime/inputs.py``) for these dtypes."""
        dtypes = self.input_dtypes if len(self.input_dtypes) == len(shapes) else ("float32",) * len(shapes)
        if self.entry is not None and all(d == "float32" for d in dtypes):
            return self.entry.example_inputs(shapes, seed)
        import numpy as np

        from attn_deploy.runtime.inputs import InputSpec, random_feeds

        names = self.input_names if len(self.input_names) == len(shapes) else tuple(f"input_{i}" for i in range(len(shapes)))
        specs = [InputSpec(n, tuple(s), np.dtype(d), self.embedding_rows) for n, s, d in zip(names, shapes, dtypes)]
        feeds = random_feeds(specs, seed, None, self.preprocess)
        return tuple(torch.from_numpy(feeds[spec.name]) for spec in specs)


def _from_entry(entry: ZooEntry, module: nn.Module, source: str, sha: str | None = None) -> LoadedModel:
    return LoadedModel(
        module=module.eval(),
        source=source,
        input_shapes=entry.input_shapes,
        input_names=entry.input_names,
        output_names=entry.output_names,
        preferred_exporter=entry.preferred_exporter,
        expected_attention_blocks=entry.attention_blocks,
        is_detector=entry.is_detector,
        source_sha256=sha,
        preprocess=entry.preprocess,
        entry=entry,
    )


def zoo_entry(spec: str) -> ZooEntry:
    name = spec.removeprefix(ZOO_PREFIX)
    try:
        return get_entry(name)
    except KeyError as e:
        raise InputError(f"{e.args[0]} (see `attn-deploy zoo list`)") from None


@contextlib.contextmanager
def _current_directory_importable() -> Iterator[None]:
    """The current directory first on ``sys.path`` meanwhile, as ``python -m`` has it: an installed
    console script does not, and ``mypkg.models:build`` run from the project's root should import."""
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _from_factory(spec: str) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    with _current_directory_importable():
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise InputError(f"cannot import {spec!r}: {e}; pass package.module:factory importable from the current directory or sys.path") from None
        if not callable(factory):
            raise InputError(f"{spec} is a {type(factory).__name__}, not a function returning a torch.nn.Module")
        try:
            model = factory()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code: any failure is reported, exit() included
            raise InputError(f"{spec}() failed: {type(e).__name__}: {first_line(e)}; MODEL as package.module:factory runs that function") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return LoadedModel(module=model.eval(), source=spec)


def _archive_kind(path: Path) -> str:
    """``torchscript``, ``pt2``, ``pickle`` (torch.save zip) or ``legacy`` (torch.save before 1.6)."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":  # a pickle protocol marker: the legacy torch.save format
            return "legacy"
        raise InputError(f"{path} is not a PyTorch model file (not a zip archive or pickle); is it truncated or of another format?")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"{path} is a corrupt or truncated archive ({e}); re-save the model") from None
    if bad is not None:
        raise InputError(f"{path} is corrupt (bad entry {bad}); re-save the model")
    if any(n.endswith("archive_format") for n in names) or path.suffix == ".pt2":
        return "pt2"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "pickle"
    raise InputError(f"{path} is a zip archive but not a TorchScript, torch.export or torch.save file")


def _load_pickle(path: Path, arch: str | None, unsafe_load: bool, sha: str) -> LoadedModel:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not unsafe_load:
            raise InputError(
                f"{path} holds a pickled object, not a state dict; loading it runs arbitrary code. "
                "Pass --unsafe-load if you trust it, or save model.state_dict() and pass --arch"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} could not be read ({first_line(e)}); is it truncated?") from None
    if isinstance(obj, nn.Module):
        return LoadedModel(module=obj.eval(), source=str(path), source_sha256=sha)
    if isinstance(obj, dict):
        if arch is None:
            raise InputError(f"{path} is a state dict; pass --arch zoo:NAME to say which model it belongs to")
        entry = zoo_entry(arch)
        module = entry.build()
        try:
            module.load_state_dict(obj)
        except RuntimeError as e:
            raise InputError(f"{path} does not fit {arch}: {first_line(e)}") from None
        return _from_entry(entry, module, str(path), sha)
    raise InputError(f"{path} holds a {type(obj).__name__}, not a module or state dict")


class _RefusedPickle:
    """Stands in for ``pickle`` inside torch's .pt2 reader: opaque Python objects are refused."""

    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def loads(*_: Any, **__: Any) -> NoReturn:
        raise pickle.UnpicklingError("an opaque Python object")


@contextlib.contextmanager
def _weights_only_unpickling() -> Iterator[None]:
    """While ``torch.export.load`` runs, every pickle it reads is read weights-only.

    Its reader unpickles pickled weights and constants with ``torch.load(weights_only=False)`` and
    opaque objects with ``pickle.loads``: a crafted archive would run code. Tensors still load.
    """
    from torch.export.pt2_archive import _package

    torch_names, package_names = vars(torch), vars(_package)  # the two modules' globals, patched for the call
    torch_load, package_pickle = torch_names["load"], package_names["pickle"]

    def weights_only(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return torch_load(*args, **kwargs)

    torch_names["load"], package_names["pickle"] = weights_only, _RefusedPickle
    try:
        yield
    finally:
        torch_names["load"], package_names["pickle"] = torch_load, package_pickle


def load_model(spec: str, *, arch: str | None = None, unsafe_load: bool = False) -> LoadedModel:
    """Load MODEL; every failure is an ``InputError`` with a message that says what to do."""
    if spec.startswith(ZOO_PREFIX):
        entry = zoo_entry(spec)
        return _from_entry(entry, entry.build(), spec)
    path = Path(spec)
    if not path.exists() and not path.is_symlink():
        if _FACTORY.fullmatch(spec):
            return _from_factory(spec)
        raise InputError(f"{spec}: no such file (MODEL is a file, zoo:NAME or package.module:factory)")
    problem = not_a_file(path)
    if problem is not None:
        raise InputError(f"{spec} {problem}; pass a model file")
    sha = sha256_file(path)
    kind = _archive_kind(path)
    if kind == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except RuntimeError as e:
            raise InputError(f"{path}: TorchScript archive could not be loaded ({first_line(e)})") from None
        return LoadedModel(module=module.eval(), source=str(path), source_sha256=sha, preferred_exporter="torchscript")
    if kind == "pt2":
        try:
            with contextlib.nullcontext() if unsafe_load else _weights_only_unpickling():
                program = torch.export.load(str(path))
        except pickle.UnpicklingError as e:
            raise InputError(
                f"{path} holds pickled Python objects ({first_line(e)}); loading them runs arbitrary code. "
                "Pass --unsafe-load if you trust the file"
            ) from None
        except Exception as e:  # noqa: BLE001 - torch.export.load raises many types
            raise InputError(f"{path}: torch.export archive could not be loaded ({first_line(e)})") from None
        examples = [t for t in program.example_inputs[0] if isinstance(t, torch.Tensor)] if program.example_inputs else []
        shapes = tuple(tuple(int(d) for d in t.shape) for t in examples)
        dtypes = tuple(str(t.dtype).removeprefix("torch.") for t in examples)
        return LoadedModel(module=program.module(), source=str(path), source_sha256=sha, input_shapes=shapes, input_dtypes=dtypes)
    if kind == "legacy" and not unsafe_load:
        raise InputError(f"{path} is a legacy pickle; loading it runs arbitrary code. Pass --unsafe-load if you trust it")
    return _load_pickle(path, arch, unsafe_load, sha)
