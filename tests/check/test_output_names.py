"""Outputs are matched by name against a PyTorch reference, never by position (#17 item 9)."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest

import attn_deploy.api as ad
from tests.conftest import RunCli

SHAPE = "1x3x64x64"


@pytest.fixture(scope="module")
def fpn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo:fpn-multiscale (five named outputs p2..pool) exported with its manifest."""
    path, _ = ad.export("zoo:fpn-multiscale", input_shapes=[(1, 3, 64, 64)]).save(tmp_path_factory.mktemp("names") / "fpn.onnx")
    return path


def _rename(model: onnx.ModelProto, renames: dict[str, str]) -> None:
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for out in model.graph.output:
        out.name = renames.get(out.name, out.name)


def _variant(src: Path, dst: Path, *, reverse: bool = False, renames: dict[str, str] | None = None) -> Path:
    model = onnx.load(src)
    if reverse:
        outputs = list(model.graph.output)[::-1]
        del model.graph.output[:]
        model.graph.output.extend(outputs)
    _rename(model, renames or {})
    onnx.save(model, dst)
    return dst


def _check(run_cli: RunCli, *artifacts: Path) -> tuple[int, str, str]:
    code, stdout, stderr = run_cli("check", "zoo:fpn-multiscale", *map(str, artifacts), "--input-shape", SHAPE, "--backends", "torch,ort")
    return code, stdout, stderr


def test_reordered_outputs_pass(run_cli: RunCli, fpn: Path, tmp_path: Path) -> None:
    reordered = _variant(fpn, tmp_path / "reordered.onnx", reverse=True)
    assert [o.name for o in onnx.load(reordered).graph.output] == ["pool", "p5", "p4", "p3", "p2"]
    code, _, stderr = _check(run_cli, reordered)
    assert code == 0, stderr


def test_swapped_names_fail(run_cli: RunCli, fpn: Path, tmp_path: Path) -> None:
    swapped = _variant(fpn, tmp_path / "swapped.onnx", renames={"p2": "p3", "p3": "p2"})
    code, stdout, stderr = _check(run_cli, swapped)
    assert code == 1, stderr
    assert "error:" not in stderr and "p2" in stdout


def test_unmatched_names_are_refused(run_cli: RunCli, fpn: Path, tmp_path: Path) -> None:
    renamed = _variant(fpn, tmp_path / "renamed.onnx", renames={"p2": "level0"})
    result = run_cli("check", "zoo:fpn-multiscale", str(renamed), "--input-shape", SHAPE, "--backends", "torch,ort")
    result.assert_error("no outputs named ['p2']")
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renamed.onnx"]



def two_outputs() -> object:
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(8, 8)
            self.b = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.a(x), self.b(x) * 3

    torch.manual_seed(0)
    return Net()


def test_unnamed_outputs_need_a_manifest(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trust_factory", sys.modules[__name__])
    model = tmp_path / "two.onnx"
    assert run_cli("export", "trust_factory:two_outputs", "--input-shape", "2x8", "-o", str(model)).exit_code == 0
    args = ["check", "trust_factory:two_outputs", str(model), "--backends", "torch,ort"]
    code, _, stderr = run_cli(*args)
    assert code == 0, stderr  # the manifest records the export's order
    model.with_suffix(".json").unlink()
    result = run_cli(*args)
    result.assert_error("cannot be matched to the ONNX outputs by name")
    assert result.stdout == ""
