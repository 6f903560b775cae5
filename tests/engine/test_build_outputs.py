"""``build-trt`` never writes over what it reads (#17 item 11): each clash is one error line, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

import attn_deploy.api as ad
from tests.conftest import RunCli


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = ad.export("zoo:sagan-256", input_shapes=[(1, 256, 8, 8)]).save(tmp_path_factory.mktemp("build") / "m.onnx")
    return path


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--save-onnx", "{m}"], "--save-onnx {m} is also the model"),
        (["-o", "{dir}/m.json"], "-o {dir}/m.json is also the model's manifest"),
        (["-o", "{dir}/m"], "the engine's build report {dir}/m.json is also the model's manifest"),
        (["-o", "{dir}/e.engine", "--save-onnx", "{dir}/e.engine"], "--save-onnx {dir}/e.engine is also -o"),
        (["-o", "{dir}/x.engine", "--save-onnx", "{dir}/x.engine.onnx"], "--save-onnx's manifest {dir}/x.engine.json is also the engine's build report"),
    ],
)
def test_an_output_that_is_an_input_is_refused(run_cli: RunCli, model: Path, args: list[str], match: str) -> None:
    folder = model.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    fill = {"m": str(model), "dir": str(folder)}
    result = run_cli("build-trt", str(model), *(a.format(**fill) for a in args))
    result.assert_error(match.format(**fill))
    assert result.stdout == ""
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
