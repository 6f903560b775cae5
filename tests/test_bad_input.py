"""Bad input from a user, as the CLI sees it: one ``error:`` line, exit 2, nothing written, no hang."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import RunCli


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["export", "zoo:sagan-256", "--opset", "99"], "does not exist"),
        (["export", "zoo:sagan-256", "--dynamic", "9"], "no such axis"),
        (["export", "zoo:sagan-256", "--dynamic=-1"], "negative axes"),
        (["export", "builtins:exit"], "failed: SystemExit"),
        (["export", "os:getcwd"], "returned str, not a torch.nn.Module"),
        (["export", "math:pi"], "is a float, not a function"),
        (["check", "zoo:sagan-256", "--val-range", "1,0"], "LOW must be below HIGH"),
        (["check", "zoo:sagan-256", "--seed", "-1"], "non-negative"),
        (["inspect", "x.onnx", "--max-attn-mem", "inf"], "positive number of bytes"),
        (["check", "zoo:sagan-256", "--triton-model", "m"], "need triton in --backends"),
        (["bench", "zoo:sagan-256", "--backends", "triton", "--triton-url", "http://localhost:1"], "give --triton-model"),
        (["package", "x.onnx", "--triton", "repo", "--name", "a", "--name", "b"], "--name given 2 times for 1 artifacts"),
    ],
)
def test_bad_option_values_are_one_line(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], match: str) -> None:
    monkeypatch.chdir(tmp_path)
    run_cli(*args).assert_error(match)
    assert not list(tmp_path.iterdir())


def test_a_pipe_is_refused_without_reading_it(run_cli: RunCli, tmp_path: Path) -> None:
    for name, command in (("model.pt", "export"), ("model.onnx", "inspect")):
        fifo = tmp_path / name
        os.mkfifo(fifo)  # opening it for reading would block forever
        run_cli(command, str(fifo)).assert_error("not a regular file")


def test_an_invalid_model_is_refused_on_load(run_cli: RunCli, tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "nowhere"], ["y"])], "g", [x], [y])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), bad)
    for args in (["lower", str(bad), "-o", str(tmp_path / "out.onnx")], ["inspect", str(bad)], ["build-trt", str(bad), "-o", str(tmp_path / "b.engine")]):
        run_cli(*args).assert_error("does not validate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_outputs_take_the_umask_and_keep_an_existing_mode(tmp_path: Path) -> None:
    import attn_deploy.api as ad

    artifact = ad.export("zoo:sagan-256")
    old = os.umask(0o022)
    try:
        onnx_path, json_path = artifact.save(tmp_path / "m.onnx")
        assert stat.S_IMODE(onnx_path.stat().st_mode) == 0o644 and stat.S_IMODE(json_path.stat().st_mode) == 0o644
        onnx_path.chmod(0o640)
        artifact.save(onnx_path)
        assert stat.S_IMODE(onnx_path.stat().st_mode) == 0o640
    finally:
        os.umask(old)


class _Touch:
    """Unpickling this runs code: it creates the file at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _crafted_pt2(tmp_path: Path, marker: Path) -> Path:
    """A real torch.export archive whose bias is stored as a pickle that creates ``marker``."""
    import json
    import pickle
    import zipfile

    import torch

    program = torch.export.export(torch.nn.Linear(4, 4).eval(), (torch.randn(1, 4),))
    good = tmp_path / "good.pt2"
    torch.export.save(program, good)
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(crafted, "w") as dst:
        config_name = next(n for n in src.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(src.read(config_name))
        bias = config["config"]["bias"]
        bias["use_pickle"] = True
        weight_name = config_name.rsplit("/", 1)[0] + "/" + bias["path_name"]
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == config_name:
                data = json.dumps(config).encode()
            elif info.filename == weight_name:
                data = pickle.dumps(_Touch(str(marker)))
            dst.writestr(info, data)
    return crafted


def test_a_crafted_pt2_runs_no_code_without_unsafe_load(run_cli: RunCli, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = _crafted_pt2(tmp_path, marker)
    for command in (["export", str(crafted), "-o", str(tmp_path / "out.onnx")], ["check", str(crafted)]):
        run_cli(*command).assert_error("--unsafe-load")
        assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_unwritable_outputs_are_one_line(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    run_cli("check", "zoo:sagan-256", "--report", str(tmp_path / "folder")).assert_error("is a directory")
    run_cli("export", "zoo:sagan-256", "-o", "/proc/attn-deploy-test/m.onnx").assert_error("cannot write")


def test_unreadable_data_is_one_line(run_cli: RunCli, tmp_path: Path) -> None:
    import numpy as np

    model = tmp_path / "m.onnx"
    assert run_cli("export", "zoo:sagan-256", "-o", str(model)).exit_code == 0
    x = np.zeros((1, 256, 64, 64), np.float32)
    np.savez(tmp_path / "good.npz", input=x)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:1000])
    np.savez(tmp_path / "text.npz", input=np.array(["a", "b"]))
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    for name, match in (("truncated.npz", "not a readable .npz"), ("text.npz", "holds <U1 values"), ("single.npz", "holds one array")):
        run_cli("check", str(model), str(model), "--backends", "ort", "--data", str(tmp_path / name)).assert_error(match)


def test_sigterm_leaves_no_temporary_files(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    scratch, out = tmp_path / "tmp", tmp_path / "out"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    cmd = [sys.executable, "-m", "attn_deploy.cli", "export", "zoo:frcnn-r50-fpn-layer4", "-o", str(out / "m.onnx")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(8)  # importing torch and building the detector: the export is under way
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert not list(scratch.iterdir())
    assert not out.exists() or not list(out.iterdir())
