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
