"""Bad files as the CLI meets them (#17 item 13): missing external data, undefined inputs, symlink
loops, directories, .npy and string data, a .pt2 SOURCE. Each is one ``error:`` line (or works),
nothing is written and nothing is left in $TMPDIR."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import RunCli


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh $TMPDIR for the run; the test asserts it stays empty. torch's compile cache goes where
    ``attn-deploy``'s ``main`` puts it (not $TMPDIR)."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path.parent / "torchinductor"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert not list(folder.iterdir())


def _matmul_model(initializers: list[onnx.TensorProto], weight: str = "w") -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", weight], ["y"])], "g", [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_missing_external_data_is_one_line(run_cli: RunCli, tmp_path: Path, scratch: Path) -> None:
    model = _matmul_model([numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()
    for args in (["lower", path, "-o", tmp_path / "out.onnx"], ["inspect", path], ["quantize", path, "-o", tmp_path / "q.onnx"]):
        run_cli(*args).assert_error("keeps tensors in ext.data, which is not beside it")
    # data that points outside the model's folder is not read
    outside = onnx.load(path, load_external_data=False)
    for entry in outside.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../etc/passwd"
    onnx.save(outside, path)
    run_cli("inspect", path).assert_error("outside its folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx", "tmpdir"]


def test_an_undefined_input_in_quantize_is_one_line(run_cli: RunCli, tmp_path: Path, scratch: Path) -> None:
    path = tmp_path / "undefined.onnx"
    onnx.save(_matmul_model([], weight="nowhere"), path)
    result = run_cli("quantize", path, "-o", tmp_path / "q.onnx")
    result.assert_error("does not validate")
    assert "nowhere" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir", "undefined.onnx"]


def test_a_symlink_loop_or_a_directory_is_named_as_such(run_cli: RunCli, tmp_path: Path, scratch: Path) -> None:
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    (tmp_path / "folder.onnx").mkdir()
    run_cli("lower", tmp_path / "a.onnx", "-o", tmp_path / "out.onnx").assert_error("a.onnx is a broken symbolic link or a symbolic link loop")
    run_cli("build-trt", tmp_path / "a.onnx").assert_error("symbolic link loop")
    run_cli("export", tmp_path / "a.onnx").assert_error("symbolic link loop")
    for args in (["check", tmp_path / "folder.onnx", tmp_path / "folder.onnx"], ["check", "zoo:sagan-256", tmp_path / "folder.onnx"]):
        result = run_cli(*args)
        result.assert_error("folder.onnx is a directory")
        assert "no such file" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "folder.onnx", "tmpdir"]


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A torch.export ``.pt2`` of a one-input model (batch 2 only: it was exported static) and its export."""
    folder = tmp_path_factory.mktemp("pt2")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).eval()
    torch.export.save(torch.export.export(module, (torch.randn(2, 8),)), folder / "m.pt2")
    import attn_deploy.api as ad

    path, _ = ad.export(str(folder / "m.pt2")).save(folder / "m.onnx")
    return folder / "m.pt2", path


def test_npy_data_feeds_a_one_input_model(run_cli: RunCli, linear: tuple[Path, Path], tmp_path: Path, scratch: Path) -> None:
    _, model = linear
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32))
    code, _, stderr = run_cli("check", model, model, "--backends", "ort", "--data", tmp_path / "x.npy")
    assert code == 0, stderr
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    run_cli("check", model, model, "--backends", "ort", "--data", tmp_path / "text.npy").assert_error("holds <U1 values")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 8), np.float32))
    run_cli("check", model, model, "--backends", "ort", "--data", tmp_path / "wrong.npy").assert_error("the model expects (2, 8)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.npy", "tmpdir", "wrong.npy", "x.npy"]


def test_a_pt2_source_checks_and_benches(run_cli: RunCli, linear: tuple[Path, Path], tmp_path: Path, scratch: Path) -> None:
    pt2, model = linear
    code, stdout, stderr = run_cli("check", pt2, model, "--backends", "torch,ort")
    assert code == 0 and "PASS" in stdout, stderr
    code, _, stderr = run_cli("bench", pt2, "--batch", "2", "--iterations", "1", "--min-seconds", "0", "--warmup", "0")
    assert code == 0, stderr
    result = run_cli("bench", pt2, "--iterations", "1", "--min-seconds", "0", "--warmup", "0")  # batch 1: not what it was exported for
    result.assert_error("failed on inputs of shape 1x8")
