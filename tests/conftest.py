"""Shared fixtures: tiny inputs, a one-line ORT runner and ``run_cli`` (the command line, in process)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

# Without a GPU, Triton kernels run in Triton's interpreter. The switch is read when Triton's own
# helpers are decorated, so it must be set before anything imports triton.language.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def run_ort(model: onnx.ModelProto | str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def relu_model(path: Path) -> Path:
    """Save ``y = relu(x)`` with ``x: [batch, 4]`` (a dynamic batch) to ``path``."""
    from onnx import TensorProto, helper

    from attn_deploy.artifact.graph import IR_VERSION

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION), path)
    return path


def _free_disk_gib() -> tuple[float, Path]:
    import shutil
    import tempfile

    where = Path(tempfile.gettempdir())
    return shutil.disk_usage(where).free / 2**30, where


def pytest_configure(config: pytest.Config) -> None:
    # A run writes about 2 GB of models; one that fills the disk fails from one test on, for no reason of its own.
    free, where = _free_disk_gib()
    if free < 4:
        config.issue_config_time_warning(
            pytest.PytestWarning(f"only {free:.1f} GiB free in {where}: a test run needs about 4; "
                                 "failures after the disk fills are not the code's"), stacklevel=2)


def pytest_report_header(config: pytest.Config) -> str:
    free, where = _free_disk_gib()
    return f"disk: {free:.1f} GiB free in {where}"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@dataclass(frozen=True)
class CliResult:
    """One ``attn-deploy`` run; unpacks (and indexes) as ``code, stdout, stderr``."""

    exit_code: int
    stdout: str
    stderr: str
    output: str  # stdout and stderr as a terminal shows them

    def __iter__(self) -> Iterator[Any]:
        return iter((self.exit_code, self.stdout, self.stderr))

    def __getitem__(self, index: int) -> Any:
        return (self.exit_code, self.stdout, self.stderr)[index]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def assert_error(self, match: str, code: int = 2) -> None:
        """The run failed with ``code`` and said why in exactly one ``error:`` line containing ``match``."""
        lines = self.error_lines()
        assert self.exit_code == code, self.stderr
        assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], self.stderr


RunCli = Callable[..., CliResult]


@pytest.fixture
def run_cli() -> RunCli:
    """``run_cli("export", "zoo:sagan-256", "-o", path)``: the command line in this process (typer's CliRunner)."""
    from typer.testing import CliRunner

    from attn_deploy.cli import app

    runner = CliRunner()

    def run(*args: str | Path) -> CliResult:
        result = runner.invoke(app, [str(a) for a in args])
        return CliResult(result.exit_code, result.stdout, result.stderr, result.output)

    return run
