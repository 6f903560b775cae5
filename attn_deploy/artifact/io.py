"""Loading and saving artifacts: the one place ONNX files and manifests are read and written.

Every failure to read is an ``InputError`` that says what to do. Writes are atomic and paired: the
model and its manifest appear together or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from attn_deploy.artifact.artifact import Artifact
from attn_deploy.artifact.fileio import atomic_paths, not_a_file, output_lock, sha256_file
from attn_deploy.artifact.manifest import FORMAT, Manifest
from attn_deploy.errors import InputError, first_line

PathLike = str | os.PathLike[str]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def manifest_path_for(onnx_path: PathLike) -> Path:
    """``model.onnx`` -> ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


def engine_report_path(engine_path: PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (the engine's build report)."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def is_onnx_path(path: PathLike) -> bool:
    return str(path).endswith(".onnx")


def is_engine_path(path: PathLike) -> bool:
    return str(path).endswith(ENGINE_SUFFIXES)


_HINT = "pass an .onnx file written by `attn-deploy export`"
_PROTOBUF_LIMIT = 2**31 - 1


def load_onnx(path: PathLike, *, hint: str = _HINT, full_check: bool = False) -> onnx.ModelProto:
    """Parse and validate an ONNX file (external data included); ``InputError`` with ``hint`` if it cannot be.

    Every model is checked with ``onnx.checker`` here, once, so no stage works on an invalid graph;
    ``full_check`` adds strict shape inference (``fuse`` rewrites by the inferred shapes).
    """
    path = Path(path)
    problem = not_a_file(path)
    if problem is not None:
        raise InputError(f"{path}{'' if problem.startswith(':') else ' '}{problem}; {hint}")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, ValueError, RuntimeError ...
        raise InputError(f"{path} is not an ONNX model ({first_line(e)}); {hint}") from None
    _load_external_data(model, path)
    if model.ir_version <= 0 or not model.graph.node:
        raise InputError(f"{path} is not an ONNX model (no graph in it); {hint}")
    try:
        # In memory (the file is parsed once); past protobuf's 2 GiB limit the checker must read the path.
        onnx.checker.check_model(model if model.ByteSize() < _PROTOBUF_LIMIT else str(path), full_check=full_check)
    except Exception as e:  # noqa: BLE001 - the checker and shape inference raise several types
        raise InputError(f"{path} does not validate ({first_line(e)}); fix or re-export the model") from None
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Read the tensors ``model`` keeps in files beside ``path``; ``InputError`` naming a missing one."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    locations = {ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)}
    folder = os.path.realpath(path.parent)
    for location in sorted(locations):
        data = path.parent / location
        if os.path.commonpath([folder, os.path.realpath(data)]) != folder:
            raise InputError(f"{path} keeps tensors in {location}, outside its folder; refusing to read it (re-save the model with its data beside it)")
        if not data.is_file():
            raise InputError(f"{path} keeps tensors in {location}, which is not beside it; copy {location} next to the model")
    if locations:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as e:  # noqa: BLE001 - a short or unreadable data file
            raise InputError(f"{path}: its external data could not be read ({first_line(e)}); re-save the model") from None


def read_json(path: Path) -> object | None:
    """A JSON file's content, None when absent or not JSON."""
    try:
        data: object = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def read_manifest(onnx_path: PathLike) -> Manifest | None:
    """The manifest beside ``onnx_path``; None when there is none or the JSON there is not one of ours."""
    path = manifest_path_for(onnx_path)
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return Manifest.from_json(data, str(path))


def load_artifact(path: PathLike, *, hint: str = _HINT) -> Artifact:
    """The model at ``path`` with its manifest.

    A manifest counts only when the sha256 it records is the model's: one beside a model that was
    changed (or replaced) after it was written is ignored, with a note, and the manifest is read off
    the graph instead, as for a model that has none (``manifest.stages`` is then empty).
    """
    path = Path(path)
    model = load_onnx(path, hint=hint)
    manifest = read_manifest(path)
    if manifest is not None and manifest.output_sha256 == sha256_file(path):
        return Artifact(model, manifest, path=path)
    notes = [] if manifest is None else [f"{manifest_path_for(path)} does not match {path} (sha256): ignored"]
    return Artifact.describe(model, source=str(path), exporter="unknown", path=path, notes=notes)


def _check_output(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"output {path} is a directory; pass a file name ending in .onnx")
    if path.suffix != ".onnx":
        raise InputError(f"output {path} must end in .onnx")


def save_artifact(artifact: Artifact, path: PathLike) -> tuple[Path, Path]:
    """Write ``path`` and ``path``'s manifest atomically; the manifest records the model's sha256."""
    onnx_path = Path(path)
    _check_output(onnx_path)
    if artifact.origin is not None and artifact.origin.exists() and artifact.origin.resolve() == onnx_path.resolve():
        raise InputError(f"output {onnx_path} is the model it was made from; pass another output path")
    json_path = manifest_path_for(onnx_path)
    if json_path.is_dir():
        raise InputError(f"{json_path} is a directory; the manifest goes there: pick another output name")
    # The manifest is renamed first, the model last; if killed outright (SIGKILL) between the two, readers
    # see a manifest whose sha256 is not the model's and ignore it (``load_artifact``). The lock keeps
    # concurrent writers' pairs whole.
    with output_lock(onnx_path), atomic_paths(json_path, onnx_path) as (tmp_json, tmp_onnx):
        onnx.save_model(artifact.proto, str(tmp_onnx))
        manifest = artifact.manifest.replace(output_sha256=sha256_file(tmp_onnx))
        tmp_json.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    artifact.manifest = manifest
    artifact.path = onnx_path
    return onnx_path, json_path
