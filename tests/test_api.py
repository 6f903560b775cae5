"""The public API, as the README shows it: the README's example runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import attn_deploy.api as ad

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python block"
    return match.group(1)


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), str(README), "exec"), {})
    assert (tmp_path / "build/api/sagan-256.onnx").is_file()
    saved = ad.load(tmp_path / "build/api/sagan-256.onnx")
    assert saved.manifest.output_sha256 and len(saved.sites) == 1


def test_import_is_light() -> None:
    """``import attn_deploy`` and the artifact layer load neither torch nor onnxruntime."""
    import subprocess

    code = "import sys, attn_deploy, attn_deploy.artifact; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_export_accepts_a_module_in_memory() -> None:
    from attn_deploy.zoo import SelfAttention

    artifact = ad.export(SelfAttention(32), input_shapes=[(1, 32, 6, 8)])
    (site,) = artifact.sites
    assert (site.Nq, site.dk, site.dv) == (48, 4, 32)
    assert artifact.manifest.inputs[0].shape == [1, 32, 6, 8]
    lowered = ad.lower(artifact)
    assert lowered.summary[0].node == site.name
    assert lowered.artifact.manifest.fused_attention[0].implementation == lowered.summary[0].implementation
    assert lowered.artifact.manifest.stages[-1] == "lower:ort"


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    from attn_deploy.artifact import Manifest

    artifact = ad.export("zoo:sagan-256")
    onnx_path, json_path = artifact.save(tmp_path / "m.onnx")
    import json

    data = json.loads(json_path.read_text())
    assert Manifest.from_json(data) == artifact.manifest
    assert ad.load(onnx_path).manifest == artifact.manifest


def test_damaged_manifest_is_an_input_error(tmp_path: Path) -> None:
    from attn_deploy.errors import InputError

    artifact = ad.export("zoo:sagan-256")
    onnx_path, json_path = artifact.save(tmp_path / "m.onnx")
    json_path.write_text('{"format": "attn-deploy-manifest/1", "source": 3}')
    with pytest.raises(InputError, match="damaged attn-deploy manifest"):
        ad.load(onnx_path)
    json_path.write_text('{"something": "else"}')  # a foreign model.json is not ours: ignored
    assert ad.load(onnx_path).manifest.exporter == "unknown"
