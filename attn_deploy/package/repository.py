"""Writing the model repository: everything validated first, then written into a temporary folder
beside REPO and renamed onto it, so REPO is either the whole new repository or untouched.

Layout (Triton's): ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/`` holding ``model.onnx``,
``model.plan`` (with the plugin library beside it) or ``model.py`` + ``model.onnx``, or nothing (an
ensemble); ``REPO/NAME.perf_data.json`` (``perf_analyzer --input-data``) and ``REPO/README.md``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from attn_deploy.artifact.fileio import atomic_folder
from attn_deploy.errors import InputError
from attn_deploy.package.config import MODEL_FILES, parse_config, render_config
from attn_deploy.package.ensemble import verify_ensembles
from attn_deploy.package.models import ModelSpec, PackageOptions, plan_models
from attn_deploy.package.perf_data import SUFFIX as PERF_DATA
from attn_deploy.package.perf_data import perf_data
from attn_deploy.package.python_model import python_model_source
from attn_deploy.package.readme import readme_text

VERSION = "1"


@dataclass(frozen=True)
class PackageResult:
    repository: Path
    models: list[ModelSpec]
    #: config.pbtxt text per model name.
    configs: dict[str, str]

    @property
    def notes(self) -> list[str]:
        return [n for m in self.models for n in m.notes]

    def to_dict(self) -> dict[str, object]:
        return {
            "repository": str(self.repository),
            "models": [{"name": m.name, "backend": m.backend, "plugin": str(m.plugin) if m.plugin else None,
                        "preferred_batch_sizes": list(m.preferred_batch_sizes)} for m in self.models],
            "notes": self.notes,
        }


def _check_target(repo: Path, force: bool) -> None:
    if repo.exists() and not repo.is_dir():
        raise InputError(f"--triton {repo} is a file; name a folder for the model repository")
    if repo.is_dir() and any(repo.iterdir()) and not force:
        raise InputError(f"--triton {repo} exists and is not empty; pass --force to replace it, or name a new folder")
    if not os.access(repo.parent if repo.parent.exists() else Path.cwd(), os.W_OK | os.X_OK):
        raise InputError(f"--triton {repo}: cannot write to {repo.parent}; pick another folder")


def _write_model(folder: Path, spec: ModelSpec, config: str) -> None:
    version = folder / VERSION
    version.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    if spec.proto is not None:
        onnx.save_model(spec.proto, str(version / "model.onnx"))
    if spec.backend == "python":
        (version / MODEL_FILES["python"]).write_text(python_model_source())
    if spec.engine is not None:
        shutil.copyfile(spec.engine, version / MODEL_FILES["tensorrt"])
    if spec.plugin is not None:
        shutil.copy2(spec.plugin, version / spec.plugin.name)


def package_repository(artifacts: Sequence[str | os.PathLike[str]], repo: str | os.PathLike[str], options: PackageOptions | None = None) -> PackageResult:
    """Write the Triton model repository ``repo`` for ``artifacts``; InputError (nothing written) for bad input."""
    options = options or PackageOptions()
    repo = Path(repo)
    _check_target(repo, options.force)
    models = plan_models(artifacts, options)
    configs = {m.name: render_config(m, options) for m in models}
    verify_ensembles({name: parse_config(text, f"{name}/config.pbtxt") for name, text in configs.items()})
    with atomic_folder(repo, "the repository") as tmp:
        for m in models:
            _write_model(tmp / m.name, m, configs[m.name])
        for m in models:
            batched = parse_config(configs[m.name]).max_batch_size > 0
            (tmp / (m.name + PERF_DATA)).write_text(json.dumps(perf_data(m, batched)))
        (tmp / "README.md").write_text(readme_text(models))
    return PackageResult(repo, models, configs)
